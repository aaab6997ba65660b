// Starts `flowspec lsp` (the command in the setting flowspec.command) for .flow files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("flowspec");
  const [command, ...args] = config.get("command", ["flowspec", "lsp"]);
  client = new LanguageClient(
    "flowspec", "flowspec", { command, args },
    {
      documentSelector: [{ language: "flowspec" }],
      initializationOptions: { plugins: config.get("plugins", []) },
    },
  );
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
