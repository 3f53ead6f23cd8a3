// A real OAuth 2.0 authorization server for tests/it/oauth.rs: oidc-provider
// (certified OpenID implementation) in client-credentials mode, issuing RS256
// JWT access tokens (RFC 9068) whose public key the harness gives Dovecot's
// oauth2 passdb. Started by tests/it/harness/oidc.rs on a loopback port; never
// used outside the tests.
//
// Settings come from one JSON file (argv[2]):
//   { "port": 0, "issuer": "http://127.0.0.1:PORT", "key_file": "...pem",
//     "kid": "...", "ttl_seconds": 120, "pad_bytes": 0,
//     "clients": [ { "client_id": "...", "client_secret": "...",   // or
//                    "public_key_file": "...pem",                 // private_key_jwt
//                    "mailbox": "survey@siri.test",
//                    "service_account": false } ] }
// A client with "service_account": true is a Google service account (its
// client_email as client_id, the public half of its key): it uses the JWT
// bearer grant (RFC 7523 §2.1) with no client authentication, as at Google,
// and gets a token acting as the assertion's `sub` if that is its mailbox.
// A client removed from the file and the server restarted is a revoked
// client: the token endpoint answers invalid_client.
// Prints "listening <port>" on stdout once it accepts connections.
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { parse as parseForm } from 'node:querystring';
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const jwk = createPrivateKey(readFileSync(settings.key_file)).export({ format: 'jwk' });
jwk.kid = settings.kid;
jwk.alg = 'RS256';
jwk.use = 'sig';

const RESOURCE = 'urn:canvass:mail';
// The scopes Microsoft's and Google's token requests carry, and a generic one.
const SCOPES = ['mail', 'https://outlook.office365.com/.default', 'https://mail.google.com/'];
const mailboxOf = new Map(settings.clients.map((c) => [c.client_id, c.mailbox]));
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_URL = `${settings.issuer}/token`;
const publicKeyOf = (c) => createPublicKey(readFileSync(c.public_key_file));
// Service accounts: client_email -> { key, mailbox }.
const serviceAccounts = new Map(
  settings.clients
    .filter((c) => c.service_account)
    .map((c) => [c.client_id, { key: publicKeyOf(c), mailbox: c.mailbox }]),
);
// The mailbox a JWT bearer request acts as, per request (token claims).
const subjectOf = new WeakMap();
// The `exp` of the token issued, per request (logged: tests wait for it).
const expOf = new WeakMap();
const RESOURCE_SERVER = {
  scope: SCOPES.join(' '),
  accessTokenFormat: 'jwt',
  accessTokenTTL: settings.ttl_seconds,
  jwt: { sign: { alg: 'RS256' } },
};

const provider = new Provider(settings.issuer, {
  clients: settings.clients.map((c) => ({
    client_id: c.client_id,
    ...(c.service_account
      ? // Google's JWT bearer request carries no client authentication:
        // the assertion (verified by the grant below) is the credential.
        { token_endpoint_auth_method: 'none' }
      : c.client_secret
      ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_post' }
      : {
          // A certificate's key: the client signs an assertion (RFC 7523),
          // as canvass does for Microsoft Entra ID.
          jwks: { keys: [{ ...publicKeyOf(c).export({ format: 'jwk' }), alg: 'RS256', use: 'sig' }] },
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'RS256',
        }),
    grant_types: [c.service_account ? JWT_BEARER : 'client_credentials'],
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
      getResourceServerInfo: () => RESOURCE_SERVER,
    },
  },
  // Dovecot's username_attribute; the padding makes tokens as long as Entra's.
  extraTokenClaims: (ctx, token) => ({
    email: subjectOf.get(ctx) ?? mailboxOf.get(token.clientId),
    ...(settings.pad_bytes > 0 ? { pad: 'p'.repeat(settings.pad_bytes) } : {}),
  }),
  ttl: { ClientCredentials: settings.ttl_seconds },
  // Header `typ: JWT` (RFC 9068 says at+jwt): Dovecot 2.3.19's local
  // validation accepts only "JWT", which is also what Entra ID's tokens say.
  formats: {
    customizers: {
      jwt: (ctx, token, jwt) => {
        jwt.header = { typ: 'JWT' };
        // Entra ID dates its tokens' iat and nbf five minutes back, for
        // clock skew. Without it a token fetched just after a second ticks
        // over can reach Dovecot before its coarse time(NULL) has ticked,
        // and Dovecot's `iat > now` check refuses it ("Token is issued in
        // future"): a flake seen in CI.
        jwt.payload.iat -= 300;
        jwt.payload.nbf = jwt.payload.iat;
        // A service account's token acts as the delegated mailbox.
        const sub = subjectOf.get(ctx);
        if (sub) jwt.payload.sub = sub;
        expOf.set(ctx, jwt.payload.exp);
      },
    },
  },
});
provider.proxy = false;

// Google identifies the service account by the assertion's `iss` alone;
// oidc-provider's token endpoint finds the client by client_id. So the body
// of a JWT bearer request without client_id gets client_id = iss (unverified
// here: the grant handler verifies the signature with that client's key).
// oidc-provider reads an upstream-parsed body from req.body.
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = { ...parseForm(Buffer.concat(chunks).toString('utf8')) };
    if (body.grant_type === JWT_BEARER && body.client_id === undefined && typeof body.assertion === 'string') {
      try {
        const { iss } = jose.decodeJwt(body.assertion);
        if (typeof iss === 'string') body.client_id = iss;
      } catch {
        // Not a JWT: the grant handler refuses it.
      }
    }
    ctx.req.body = body;
  }
  await next();
});

// RFC 7523 §2.1, as Google's token endpoint does it for a service account
// with domain-wide delegation: an RS256 assertion signed by the account's
// key, iss = client_email, aud = the token URL, exp at most an hour after
// iat, scope = the delegated scope, sub = the mailbox acted as.
provider.registerGrantType(
  JWT_BEARER,
  async (ctx) => {
    const { client } = ctx.oidc;
    const account = serviceAccounts.get(client.clientId);
    if (!account) throw new errors.UnauthorizedClient('not a service account');
    const invalidGrant = (why) => {
      const e = new errors.InvalidGrant();
      e.error_description = why;
      return e;
    };
    let claims;
    try {
      ({ payload: claims } = await jose.jwtVerify(ctx.oidc.params.assertion ?? '', account.key, {
        algorithms: ['RS256'],
        issuer: client.clientId,
        audience: TOKEN_URL,
        requiredClaims: ['iss', 'sub', 'aud', 'iat', 'exp', 'scope'],
        maxTokenAge: '1h',
      }));
    } catch (err) {
      throw invalidGrant(`invalid assertion: ${err.code ?? ''} ${err.message}`);
    }
    if (claims.exp - claims.iat > 3600) throw invalidGrant('assertion lives longer than an hour');
    if (claims.sub !== account.mailbox) throw invalidGrant(`${claims.sub} is not delegated to this service account`);
    const scopes = String(claims.scope).split(' ');
    if (!scopes.includes('https://mail.google.com/') || scopes.some((s) => !SCOPES.includes(s))) {
      throw new errors.UnauthorizedClient(`scope ${claims.scope} is not delegated`);
    }
    subjectOf.set(ctx, claims.sub);
    // The same token as client credentials': RS256 JWT for the mail resource.
    const token = new provider.ClientCredentials({ client, scope: scopes.join(' ') });
    token.resourceServer = new provider.ResourceServer(RESOURCE, RESOURCE_SERVER);
    ctx.oidc.entity('ClientCredentials', token);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      expires_in: token.expiration,
      token_type: 'Bearer',
      scope: token.scope,
    };
  },
  ['assertion', 'scope'],
);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
// One line per token issued, with its exp (tests count refreshes and wait
// for the expiry), and per refusal.
provider.on('grant.success', (ctx) => console.error(`issued token to ${ctx.oidc.client?.clientId} exp=${expOf.get(ctx)}`));
provider.on('grant.error', (ctx, err) => console.error(`refused: ${err.error}`));

const server = provider.listen(settings.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
