/** den's version, reported by the daemon, the agent and the CLI. In its own module so the agent can import it alone. */
export const DEN_VERSION = '0.1.0';
