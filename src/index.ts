export { UnirouteError, type ErrorCode } from './errors.js';
export { Router, explain, type RouteBatch, type RouteDecision, type RouteOptions, type ModelInfo, type Outcome } from './router/router.js';
export { fitRouter, clusterGrid, type FitOptions, type FitReport } from './router/fit.js';
export { errorStats, errorVector, overallError } from './router/profile.js';
export { HashedEmbedder, type EmbedderSpec } from './embed/embedder.js';
export { loadDataset, mergeDatasets, costPerQuery, permutation, type Dataset } from './data/dataset.js';
export { deferralArea, monotoneCurve, routerCurve, lambdaGrid, type CurvePoint } from './eval/metrics.js';
export { setThreads, getThreads, setBackend, backendInfo, type Backend, type BackendInfo } from './engine/native.js';
export { defaultRouterPath } from './defaults.js';
