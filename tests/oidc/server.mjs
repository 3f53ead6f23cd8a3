// A real OAuth 2.0 authorization server for tests/oauth.rs: oidc-provider
// (certified OpenID implementation) in client-credentials mode, issuing RS256
// JWT access tokens (RFC 9068) whose public key the harness gives Dovecot's
// oauth2 passdb. Started by tests/harness/oidc.rs on a loopback port; never
// used outside the tests.
//
// Settings come from one JSON file (argv[2]):
//   { "port": 0, "issuer": "http://127.0.0.1:PORT", "key_file": "...pem",
//     "kid": "...", "ttl_seconds": 120, "pad_bytes": 0,
//     "clients": [ { "client_id": "...", "client_secret": "...",   // or
//                    "public_key_file": "...pem",                 // private_key_jwt
//                    "mailbox": "survey@siri.test" } ] }
// A client removed from the file and the server restarted is a revoked
// client: the token endpoint answers invalid_client.
// Prints "listening <port>" on stdout once it accepts connections.
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwk = createPrivateKey(readFileSync(settings.key_file)).export({ format: 'jwk' });
jwk.kid = settings.kid;
jwk.alg = 'RS256';
jwk.use = 'sig';

const RESOURCE = 'urn:canvass:mail';
// The scopes Microsoft's and Google's token requests carry, and a generic one.
const SCOPES = ['mail', 'https://outlook.office365.com/.default', 'https://mail.google.com/'];
const mailboxOf = new Map(settings.clients.map((c) => [c.client_id, c.mailbox]));

const provider = new Provider(settings.issuer, {
  clients: settings.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.client_secret
      ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_post' }
      : {
          // A certificate's key: the client signs an assertion (RFC 7523),
          // as canvass does for Microsoft Entra ID.
          jwks: { keys: [{ ...createPublicKey(readFileSync(c.public_key_file)).export({ format: 'jwk' }), alg: 'RS256', use: 'sig' }] },
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'RS256',
        }),
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPES.join(' '),
  })),
  jwks: { keys: [jwk] },
  scopes: SCOPES,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPES.join(' '),
        accessTokenFormat: 'jwt',
        accessTokenTTL: settings.ttl_seconds,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  // Dovecot's username_attribute; the padding makes tokens as long as Entra's.
  extraTokenClaims: (ctx, token) => ({
    email: mailboxOf.get(token.clientId),
    ...(settings.pad_bytes > 0 ? { pad: 'p'.repeat(settings.pad_bytes) } : {}),
  }),
  ttl: { ClientCredentials: settings.ttl_seconds },
  // Header `typ: JWT` (RFC 9068 says at+jwt): Dovecot 2.3.19's local
  // validation accepts only "JWT", which is also what Entra ID's tokens say.
  formats: {
    customizers: {
      jwt: (ctx, token, jwt) => {
        jwt.header = { typ: 'JWT' };
      },
    },
  },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => console.error('server_error', err));
// One line per token issued (tests count refreshes), and per refusal.
provider.on('grant.success', (ctx) => console.error(`issued token to ${ctx.oidc.client?.clientId}`));
provider.on('grant.error', (ctx, err) => console.error(`refused: ${err.error}`));

const server = provider.listen(settings.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
