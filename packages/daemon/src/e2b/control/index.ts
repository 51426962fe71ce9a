export { type E2BControlDeps, e2bControlRoutes } from './routes.js';
export { CgroupSandboxMetrics, type SandboxMetricSample, type SandboxMetricsSource } from './sandbox-metrics.js';
