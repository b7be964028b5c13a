// The AWS SDK for JavaScript v3 as any program uses it: the default Node.js credential chain
// (container endpoint, credential_process profiles, ...) and sts:GetCallerIdentity against the
// endpoint given as the only argument. Prints the caller's ARN (tests/tests/cli_sdks.rs).
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

const sts = new STSClient({
  region: "us-east-1",
  endpoint: process.argv[2],
  credentials: fromNodeProviderChain(),
});
try {
  const who = await sts.send(new GetCallerIdentityCommand({}));
  console.log(who.Arn);
} catch (e) {
  console.error(`whoami.mjs: ${e.name}: ${e.message}`);
  process.exit(1);
}
