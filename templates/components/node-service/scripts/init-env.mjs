#!/usr/bin/env node
// Create .env from .env.example, giving every placeholder (a value starting with `replace-with-`)
// a fresh random value. An existing .env is never touched. Run by `make install` and `make run`.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

if (!existsSync(".env")) {
  const replaced = [];
  const text = readFileSync(".env.example", "utf8").replace(/^([A-Z][A-Z0-9_]*)=replace-with-\S*$/gm, (_line, name) => {
    replaced.push(name);
    return `${name}=${randomBytes(24).toString("hex")}`;
  });
  writeFileSync(".env", text, { mode: 0o600 });
  console.log(
    `Created ${resolve(".env")} with fresh random ${replaced.join(", ")} (48 hex characters each; keep it private: git ignores it).`,
  );
}
