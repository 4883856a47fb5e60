// The scaffolding other packages' tests share: a service's main.ts as a process, raw HTTP exchanges,
// a throwaway PKI for TLS tests, and the bearer metadata and failed-call helpers of gRPC tests.
export { bearer, failure } from './grpc.js';
export { createTestPki, type TestPkiOptions } from './pki.js';
export { REPO_ROOT, startServiceProcess, type ServiceProcess } from './process.js';
export { rawHttp, type RawAnswer } from './raw-http.js';
