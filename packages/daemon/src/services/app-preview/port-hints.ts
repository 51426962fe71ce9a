/**
 * Reads the port a project asks for out of its scripts and sources. Only literal numbers count; anything computed
 * falls back to the framework's default, and the plan then passes the chosen port to the server explicitly.
 */

function validPort(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const port = Number(text);
  return Number.isInteger(port) && port >= 1 && port <= 65535 ? port : undefined;
}

function firstMatch(text: string, patterns: RegExp[]): number | undefined {
  for (const pattern of patterns) {
    const port = validPort(pattern.exec(text)?.[1]);
    if (port !== undefined) return port;
  }
  return undefined;
}

/** `--port 4000`, `--port=4000`, `-p 4000` or `PORT=4000` in a shell command line (a package.json script). */
export function portFromCommandLine(command: string | undefined): number | undefined {
  if (!command) return undefined;
  return firstMatch(command, [/(?:^|\s)--port[=\s]+(\d+)/, /(?:^|\s)-p\s+(\d+)/, /(?:^|\s)PORT=(\d+)/]);
}

/** `PORT=4000` in a dotenv file. */
export function portFromDotenv(text: string | undefined): number | undefined {
  if (!text) return undefined;
  return firstMatch(text, [/^\s*(?:export\s+)?PORT\s*=\s*["']?(\d+)/m]);
}

/** `process.env.PORT || 4000`, `process.env.PORT ?? '4000'`, then `.listen(4000`, in a Node entry file. */
export function portFromNodeSource(text: string | undefined): number | undefined {
  if (!text) return undefined;
  return firstMatch(text, [
    /process\.env\.PORT\s*(?:\|\||\?\?)\s*["'`]?(\d+)/,
    /process\.env\[["']PORT["']\]\s*(?:\|\||\?\?)\s*["'`]?(\d+)/,
    /\.listen\(\s*(\d+)/,
    /\bport\s*:\s*(\d+)/,
  ]);
}

/** `server: { port: 3001 }` in a vite.config.* file. */
export function portFromViteConfig(text: string | undefined): number | undefined {
  if (!text) return undefined;
  return firstMatch(text, [/server\s*:\s*\{[^}]*?\bport\s*:\s*(\d+)/s]);
}

/**
 * `os.environ.get("PORT", "8080")`, `os.getenv('PORT', 8080)`, `os.environ.get("PORT") or 8080`, then
 * `port=8080` (app.run / uvicorn.run keywords) and `HTTPServer(("", 8080)`, in a Python file.
 */
export function portFromPythonSource(text: string | undefined): number | undefined {
  if (!text) return undefined;
  return firstMatch(text, [
    /os\.(?:environ\.get|getenv)\(\s*["']PORT["']\s*,\s*["']?(\d+)/,
    /os\.(?:environ\.get|getenv)\(\s*["']PORT["']\s*\)\s*or\s*["']?(\d+)/,
    /\bport\s*=\s*(\d+)/,
    /Server\(\s*\(\s*["'][^"']*["']\s*,\s*(\d+)\s*\)/,
  ]);
}
