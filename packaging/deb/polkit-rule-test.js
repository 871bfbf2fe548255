// Evaluates the polkit rule file the way polkitd does (polkit.addRule
// with action and subject objects) and checks whom it allows.
//
//   node polkit-rule-test.js 60-encoder-bridge.rules
"use strict";
const fs = require("fs");
const vm = require("vm");

const rules = [];
const polkit = {
  Result: { YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin", NOT_HANDLED: null },
  addRule: (f) => rules.push(f),
  log: () => {},
};
vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), { polkit });
if (rules.length !== 1) {
  console.error(`want one rule, got ${rules.length}`);
  process.exit(1);
}

const cases = [
  ["org.debian.pcsc-lite.access_pcsc", "encoder-bridge", "yes"],
  ["org.debian.pcsc-lite.access_card", "encoder-bridge", "yes"],
  ["org.debian.pcsc-lite.access_pcsc", "www-data", undefined],
  ["org.debian.pcsc-lite.access_card", "clerk", undefined],
  ["org.freedesktop.systemd1.manage-units", "encoder-bridge", undefined],
];
let failed = false;
for (const [id, user, want] of cases) {
  const got = rules[0]({ id, lookup: () => "" }, { user, local: false, active: false });
  if (got !== want) {
    console.error(`${id} for ${user}: got ${got}, want ${want}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
