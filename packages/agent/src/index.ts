export { type AgentConfig, configFromEnv } from './config.js';
export * from './protocol.js';
export { type Agent, type AgentOptions, createAgent } from './server.js';
