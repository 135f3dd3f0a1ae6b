// google-auth-library (Node) as a Cloud Run workload uses it: an ID token client for an
// audience, and the project id, both from the metadata server. Prints one JSON object.
const { GoogleAuth } = require('google-auth-library');

(async () => {
  const audience = process.argv[2];
  const auth = new GoogleAuth();
  const client = await auth.getIdTokenClient(audience);
  const headers = await client.getRequestHeaders();
  const authorization = typeof headers.get === 'function' ? headers.get('authorization') : headers.Authorization;
  const project = await auth.getProjectId();
  console.log(JSON.stringify({ authorization, project }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
