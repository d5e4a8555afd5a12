#!/usr/bin/env python3
"""Talks to a running Tessera server for bench/run.sh (standard library only).

  client.py ready  --port P [--pid PID] [--timeout S]
      Waits until GET /readyz answers 200 (fails early if process PID exits).
  client.py login  --port P --tenants N --password PW --out FILE [--workers K]
      Logs in as owner@bench-XXX.test on each tenant's host and writes one line per tenant,
      "<index>\t<slug>\t<access_token>", for bench/wrk/get_contact.lua.
  client.py mint   --key PEM --sessions FILE --out FILE [--issuer I] [--audience A] [--ttl S]
      Signs access tokens the way the server does (EdDSA JWT, kid from the public key, the claims
      of src/auth/tokens.rs) with the server's own signing key, for sessions that exist in the
      database (FILE: "<index>\t<slug>\t<tenant_id>\t<user_id>\t<session_id>" per line, the
      session id being a live refresh_tokens.family_id). Writes the same tokens file as login,
      without 10,000 argon2 logins. Needs python3-cryptography.
  client.py check  --port P --tokens FILE --contacts M
      Before any load: a tenant's own contact answers 200 and carries the requested id; another
      tenant's contact id does not answer 200 on this tenant's host (404 expected), nor does a
      request without a token (401 expected). Fails on any 200 there, or on a 5xx.

Names and ids follow bench/seed.sh: tenant i has slug bench-%03d, id
00000000-0000-7000-8000-{100000000000+i}; its contact c has id
{10000000+i}-0000-7000-8000-{100000000000+c}.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import sys
import time


def slug(i: int) -> str:
    return f"bench-{i:03d}"


def tenant_id(i: int) -> str:
    return f"00000000-0000-7000-8000-{100000000000 + i}"


def contact_id(i: int, c: int) -> str:
    return f"{10000000 + i}-0000-7000-8000-{100000000000 + c}"


def request(port, method, path, host=None, headers=None, body=None, timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Host": host or f"localhost:{port}", "Accept": "application/json"}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_ready(a) -> int:
    deadline = time.monotonic() + a.timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if a.pid and not pid_alive(a.pid):
            print(f"server process {a.pid} exited before it was ready", file=sys.stderr)
            return 1
        try:
            status, body = request(a.port, "GET", "/readyz", timeout=2.0)
            if status == 200:
                return 0
            last = f"{status} {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.25)
    print(f"server not ready after {a.timeout}s (last: {last})", file=sys.stderr)
    return 1


def login_one(port: int, i: int, password: str):
    host = f"{slug(i)}.localhost:{port}"
    body = {"email": f"owner@{slug(i)}.test", "password": password}
    for attempt in range(5):
        status, raw = request(port, "POST", "/v1/auth/login", host=host, body=body)
        if status == 200:
            doc = json.loads(raw)
            token = doc.get("access_token")
            if not token or doc.get("token_type", "Bearer").lower() != "bearer":
                raise RuntimeError(f"{slug(i)}: unexpected login answer {raw[:300]!r}")
            return i, token
        if status in (429, 503) and attempt < 4:
            time.sleep(1.0 + attempt)
            continue
        raise RuntimeError(f"{slug(i)}: login answered {status} {raw[:300]!r}")
    raise AssertionError("unreachable")


def cmd_login(a) -> int:
    started = time.monotonic()
    tokens = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.workers) as pool:
        futures = [pool.submit(login_one, a.port, i, a.password) for i in range(1, a.tenants + 1)]
        for f in concurrent.futures.as_completed(futures):
            try:
                i, token = f.result()
            except Exception as e:  # noqa: BLE001 - report every failure the same way
                print(f"login failed: {e}", file=sys.stderr)
                return 1
            tokens[i] = token
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        for i in sorted(tokens):
            f.write(f"{i}\t{slug(i)}\t{tokens[i]}\n")
    os.replace(tmp, a.out)
    print(f"logged in to {len(tokens)} tenants in {time.monotonic() - started:.1f}s")
    return 0


def b64url(raw: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def cmd_mint(a) -> int:
    import hashlib
    import uuid
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(open(a.key, "rb").read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        print(f"{a.key}: not an Ed25519 private key", file=sys.stderr)
        return 1
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = b64url(public)
    # src/auth/keys.rs: kid = base64url(sha256 of the RFC 7638-style JWK)[..12 bytes].
    kid = b64url(hashlib.sha256(f'{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}'.encode()).digest()[:12])
    header = b64url(json.dumps({"typ": "JWT", "alg": "EdDSA", "kid": kid}, separators=(",", ":")).encode())
    now = int(time.time())
    count = 0
    tmp = a.out + ".tmp"
    with open(a.sessions) as src, open(tmp, "w") as out:
        for line in src:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            index, slug_, tenant, user, session = parts
            claims = {"iss": a.issuer, "aud": a.audience, "sub": user, "tid": tenant,
                      "tslug": slug_, "iat": now, "nbf": now, "exp": now + a.ttl,
                      "jti": str(uuid.uuid4()), "sid": session}
            signing_input = header + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
            token = signing_input + "." + b64url(key.sign(signing_input.encode()))
            out.write(f"{index}\t{slug_}\t{token}\n")
            count += 1
    os.replace(tmp, a.out)
    print(f"minted {count} tokens")
    return 0 if count else 1


def read_tokens(path):
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3:
                out.append((int(parts[0]), parts[1], parts[2]))
    return out


def cmd_check(a) -> int:
    tokens = read_tokens(a.tokens)
    if not tokens:
        print("no tokens", file=sys.stderr)
        return 1
    rng = random.Random(42)
    failures = []
    samples = tokens if len(tokens) <= 5 else rng.sample(tokens, 5)
    for i, s, tok in samples:
        auth = {"Authorization": f"Bearer {tok}"}
        host = f"{s}.localhost:{a.port}"
        for c in (1, a.contacts, rng.randint(1, a.contacts)):
            cid = contact_id(i, c)
            status, body = request(a.port, "GET", f"/v1/contacts/{cid}", host=host, headers=auth)
            if status != 200:
                failures.append(f"{s} own contact {cid}: {status} {body[:200]!r}")
            elif cid.encode() not in body:
                failures.append(f"{s} own contact {cid}: 200 without the id: {body[:200]!r}")
        if len(tokens) > 1:
            # Another tenant's contact id, on this tenant's host with this tenant's token.
            others = [t for t in tokens if t[0] != i]
            j = rng.choice(others)[0]
            cid = contact_id(j, 1)
            status, body = request(a.port, "GET", f"/v1/contacts/{cid}", host=host, headers=auth)
            if status == 200 or status >= 500:
                failures.append(f"{s} reading {slug(j)}'s contact {cid}: expected 404, got "
                                f"{status} {body[:200]!r}")
            elif status != 404:
                print(f"note: {s} reading {slug(j)}'s contact answered {status}, not 404",
                      file=sys.stderr)
    # No token at all must not read anything either.
    i, s, _ = tokens[0]
    status, body = request(a.port, "GET", f"/v1/contacts/{contact_id(i, 1)}",
                           host=f"{s}.localhost:{a.port}")
    if status == 200 or status >= 500:
        failures.append(f"{s} without a token: expected 401, got {status} {body[:200]!r}")
    elif status != 401:
        print(f"note: {s} without a token answered {status}, not 401", file=sys.stderr)
    for f in failures:
        print(f"check failed: {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"server check passed ({len(samples)} tenants: own contacts 200 with the right id, "
          f"other tenants' ids 404, no token 401)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ready")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--pid", type=int, default=0)
    r.add_argument("--timeout", type=float, default=120.0)
    lg = sub.add_parser("login")
    lg.add_argument("--port", type=int, required=True)
    lg.add_argument("--tenants", type=int, required=True)
    lg.add_argument("--password", required=True)
    lg.add_argument("--out", required=True)
    lg.add_argument("--workers", type=int, default=4)
    mt = sub.add_parser("mint")
    mt.add_argument("--key", required=True)
    mt.add_argument("--sessions", required=True)
    mt.add_argument("--out", required=True)
    mt.add_argument("--issuer", default="tessera")
    mt.add_argument("--audience", default="tessera-api")
    mt.add_argument("--ttl", type=int, default=900)
    c = sub.add_parser("check")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--tokens", required=True)
    c.add_argument("--contacts", type=int, required=True)
    a = p.parse_args()
    return {"ready": cmd_ready, "login": cmd_login, "mint": cmd_mint, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
