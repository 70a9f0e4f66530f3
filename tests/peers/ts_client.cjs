// The official TypeScript SDK client against the adapter: node ts_client.cjs NODE_MODULES_DIR URL streamable|sse
// Prints one JSON object of what it saw (tests/adapter/test_peers.py asserts on it).
const path = require("node:path");
const [, , modules, url, kind] = process.argv;
const sdk = (name) => require(path.join(modules, "@modelcontextprotocol/sdk/dist/cjs", name));
const { Client } = sdk("client/index.js");
const { StreamableHTTPClientTransport } = sdk("client/streamableHttp.js");
const { SSEClientTransport } = sdk("client/sse.js");
const { CreateMessageRequestSchema } = sdk("types.js");

async function main() {
  const client = new Client({ name: "kmcp-ts-test", version: "1.0.0" }, { capabilities: { sampling: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
    role: "assistant",
    model: "t",
    content: { type: "text", text: `ts:${request.params.messages[0].content.text}` },
  }));
  const transport = kind === "sse" ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  const seen = {};
  seen.protocolVersion = transport.protocolVersion ?? null;
  seen.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  seen.echo = (await client.callTool({ name: "echo", arguments: { text: "from ts" } })).content[0].text;
  const progress = [];
  const counted = await client.callTool({ name: "count", arguments: { steps: 2 } }, undefined, {
    onprogress: (p) => progress.push(p.progress),
  });
  seen.count = counted.content[0].text;
  seen.progress = progress;
  seen.ask = (await client.callTool({ name: "ask", arguments: { question: "q" } })).content[0].text;
  seen.resource = (await client.readResource({ uri: "test://greeting" })).contents[0].text;
  await client.ping();
  seen.ping = true;
  if (kind !== "sse") {
    await transport.terminateSession();
    seen.terminated = transport.sessionId === undefined;
  }
  await client.close();
  console.log(JSON.stringify(seen));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
