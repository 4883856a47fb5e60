// The registry's scaffolding that other packages' tests use (`@quanta/model-registry/testing`).
export { TEST_S3_CREDENTIALS, TEST_S3_REGION, startTestS3, type TestS3 } from './s3.js';
