"""Cloud-init user data for one RKE2 server: a shell script built from rendered config. Pure.

The script (run once by cloud-init at first boot):
1. writes the rendered `config.yaml` (and the authentication-config when given) with mode
   0600 - the config names `token-file`, never the token itself;
2. reads the RKE2 token from the SSM SecureString through the instance profile (IMDSv2
   credentials; the aws CLI when installed, else curl's built-in SigV4 signing) into a
   0600 file - the token is never in the user data, which anyone with
   ec2:DescribeInstanceAttribute can read;
3. a joining server waits, bounded, until the registration address answers `/ping` with
   `pong` and the previous server's apiserver is ready - parallel joins fail with "too
   many learner members";
4. installs RKE2 at the pinned version and starts `rke2-server`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from rke2ha.errors import InvalidError

CONFIG_DIR = "/etc/rancher/rke2"
TOKEN_FILE = f"{CONFIG_DIR}/rke2ha-token"
HEREDOC_MARK = "RKE2HA_END_OF_FILE"
USER_DATA_LIMIT = 16 * 1024  # EC2 rejects user data above 16 KiB (before base64)
JOIN_WAIT_SECONDS = 3600


@dataclass(frozen=True)
class ServerBoot:
    """What one server's first boot needs."""

    cluster: str
    node: str
    rke2_version: str
    region: str
    token_parameter: str
    config_yaml: str  # rendered RKE2 config.yaml for this node (with token-file, no token)
    registration_url: str | None  # https://<hostname>:9345 for joiners, None for the first
    previous_server: str | None  # private address of the server before this one
    readyz_statuses: tuple[int, ...]  # what counts as "previous server ready"
    extra_files: tuple[tuple[str, str], ...] = ()  # (path, content) e.g. authentication-config


def _heredoc(path: str, content: str) -> str:
    if HEREDOC_MARK in content:
        raise InvalidError(f"{path}: rendered content contains {HEREDOC_MARK}; cannot embed it")
    body = content if content.endswith("\n") else content + "\n"
    quoted = shlex.quote(path)
    return (
        f"install -d -m 0700 {shlex.quote(path.rsplit('/', 1)[0])}\n"
        f"cat > {quoted} <<'{HEREDOC_MARK}'\n{body}{HEREDOC_MARK}\nchmod 0600 {quoted}\n"
    )


_FETCH_TOKEN = r"""
imds() {
  local t
  t=$(curl -sf -X PUT http://169.254.169.254/latest/api/token \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  curl -sf -H "X-aws-ec2-metadata-token: $t" "http://169.254.169.254/latest/$1"
}
fetch_token() {
  if command -v aws >/dev/null 2>&1; then
    aws ssm get-parameter --region "$REGION" --name "$PARAM" --with-decryption \
      --query Parameter.Value --output text
    return
  fi
  local role creds
  role=$(imds meta-data/iam/security-credentials/)
  creds=$(imds "meta-data/iam/security-credentials/$role")
  json_get() {
    python3 -c 'import functools,json,sys
print(functools.reduce(lambda d, k: d[k], sys.argv[1].split("."), json.load(sys.stdin)))' "$1"
  }
  curl -sf --aws-sigv4 "aws:amz:$REGION:ssm" \
    --user "$(echo "$creds" | json_get AccessKeyId):$(echo "$creds" | json_get SecretAccessKey)" \
    -H "x-amz-security-token: $(echo "$creds" | json_get Token)" \
    -H 'X-Amz-Target: AmazonSSM.GetParameter' -H 'Content-Type: application/x-amz-json-1.1' \
    --data "{\"Name\":\"$PARAM\",\"WithDecryption\":true}" "https://ssm.$REGION.amazonaws.com/" \
    | json_get Parameter.Value
}
for attempt in $(seq 1 60); do
  if token=$(fetch_token) && [ -n "$token" ]; then break; fi
  echo "rke2ha: token not readable yet (attempt $attempt), retrying"; sleep 10
done
[ -n "${token:-}" ] || { echo "rke2ha: could not read $PARAM from SSM" >&2; exit 1; }
(umask 077; printf '%s\n' "$token" > "$TOKEN_FILE")
unset token
"""

_WAIT_JOIN = r"""
deadline=$(( $(date +%s) + JOIN_WAIT ))
until [ "$(curl -sk --max-time 5 "$REGISTRATION/ping" || true)" = "pong" ]; do
  [ "$(date +%s)" -lt "$deadline" ] \
    || { echo "rke2ha: $REGISTRATION/ping never answered" >&2; exit 1; }
  echo "rke2ha: waiting for $REGISTRATION/ping"; sleep 10
done
until status=$(curl -sk --max-time 5 -o /dev/null -w '%{http_code}' \
                "https://$PREVIOUS:6443/readyz") \
      && [[ " $READY_STATUSES " == *" $status "* ]]; do
  [ "$(date +%s)" -lt "$deadline" ] \
    || { echo "rke2ha: $PREVIOUS never became ready" >&2; exit 1; }
  echo "rke2ha: waiting for the previous server $PREVIOUS to be ready"; sleep 10
done
"""

_INSTALL = r"""
curl -sfL https://get.rke2.io | INSTALL_RKE2_VERSION="$RKE2_VERSION" INSTALL_RKE2_TYPE=server sh -
systemctl enable --now rke2-server.service
echo "rke2ha: rke2-server started"
"""


def build_user_data(boot: ServerBoot, *, secrets_not_allowed: tuple[str, ...] = ()) -> str:
    """The user data script for `boot`; refuses output containing any of `secrets_not_allowed`."""
    if "token:" in boot.config_yaml.replace("token-file:", ""):
        raise InvalidError(
            f"{boot.node}: rendered config.yaml carries the token itself; "
            "the AWS provider needs it rendered with token-file"
        )
    lines = [
        "#!/bin/bash",
        f"# rke2ha: RKE2 server {boot.node} of cluster {boot.cluster} (generated; the token",
        "# is read from SSM at boot and never written here).",
        "set -euo pipefail",
        "exec >>/var/log/rke2ha-bootstrap.log 2>&1",
        f"REGION={shlex.quote(boot.region)}",
        f"PARAM={shlex.quote(boot.token_parameter)}",
        f"TOKEN_FILE={shlex.quote(TOKEN_FILE)}",
        f"RKE2_VERSION={shlex.quote(boot.rke2_version)}",
        f"JOIN_WAIT={JOIN_WAIT_SECONDS}",
    ]
    script = "\n".join(lines) + "\n"
    script += _heredoc(f"{CONFIG_DIR}/config.yaml", boot.config_yaml)
    for path, content in boot.extra_files:
        script += _heredoc(path, content)
    script += _FETCH_TOKEN
    if boot.registration_url is not None:
        if boot.previous_server is None:
            raise InvalidError(f"{boot.node}: a joining server needs the previous server's address")
        script += (
            f"REGISTRATION={shlex.quote(boot.registration_url)}\n"
            f"PREVIOUS={shlex.quote(boot.previous_server)}\n"
            f"READY_STATUSES={shlex.quote(' '.join(str(s) for s in boot.readyz_statuses))}\n"
        )
        script += _WAIT_JOIN
    script += _INSTALL
    for secret in secrets_not_allowed:
        if secret and secret in script:
            raise InvalidError(f"{boot.node}: user data would contain a secret; refusing")
    if len(script.encode()) > USER_DATA_LIMIT:
        raise InvalidError(
            f"{boot.node}: user data is {len(script.encode())} bytes, above EC2's 16 KiB"
        )
    return script
