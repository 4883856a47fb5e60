// The scaffolding other packages' tests share: a service's main.ts as a process, and raw HTTP exchanges.
export { REPO_ROOT, startServiceProcess, type ServiceProcess } from './process.js';
export { rawHttp, type RawAnswer } from './raw-http.js';
