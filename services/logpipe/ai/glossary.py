"""Operations vocabulary for search: each spelling people use, and the plain words logs use.

Applied alike to logs and questions on the keyword side (a question's abbreviation meets the
log's spelled-out word, and the reverse), and on the vector side to questions only: the words
an entry stands for are appended to the embedded question (query expansion), so "OOMKilled"
is embedded as "OOMKilled (out memory killed)". Logs are embedded as before, so changing this
file needs no re-embedding; their keyword vectors follow it once replayed.

Written from general knowledge of the trade, one group per domain, not from any benchmark
question. The person who wrote it also wrote bench/search_quality.py's HELD_OUT_HARD set, so
a few entries (rss, cgroup, xmx, ldap, stripe, redpanda, jdbc, lb, enospc, dependency,
filesystem) appear there: questions kept aside by others remain the fairer test.
Keys are lower-case single tokens as `keyword_terms` splits them; values are words, not phrases
to match. HTTP statuses come from `http.HTTPStatus`, not from this table.
"""

from __future__ import annotations

from http import HTTPStatus

_GROUPS: dict[str, dict[str, str]] = {
    "general abbreviations": {
        "conn": "connection", "conns": "connection", "msg": "message", "msgs": "message", "cfg": "config",
        "conf": "config", "env": "environment", "svc": "service", "req": "request", "reqs": "request",
        "resp": "response", "txn": "transaction", "tx": "transaction", "perm": "permission",
        "perms": "permission", "dependency": "upstream dependency", "dependencies": "upstream dependency",
        "downstream": "upstream", "backend": "upstream", "peer": "upstream",
    },
    "databases and their parts": {
        "db": "database", "dbs": "database", "datastore": "database", "postgres": "postgresql database",
        "postgresql": "postgresql database", "pg": "postgresql database", "psql": "postgresql database",
        "mysql": "sql database", "mariadb": "sql database", "aurora": "sql database", "rds": "sql database",
        "mssql": "sql database", "sqlserver": "sql database", "oracle": "sql database",
        "sql": "sql database", "mongo": "database", "mongodb": "database", "cassandra": "database",
        "jdbc": "database connection", "odbc": "database connection", "orm": "database",
        "hibernate": "database", "hikari": "connection pool", "hikaricp": "connection pool",
        "pgbouncer": "postgresql connection pool", "redis": "cache", "memcached": "cache",
    },
    "memory and processes": {
        "oom": "out memory", "oomkilled": "out memory killed", "oomkiller": "out memory killed",
        "ram": "memory", "mem": "memory", "heap": "memory heap", "rss": "resident memory",
        "xmx": "max heap memory", "gc": "garbage collection memory", "cgroup": "container resource limit",
        "cgroups": "container resource limit", "sigkill": "killed", "sigterm": "terminated",
        "segfault": "segmentation fault crash", "sigsegv": "segmentation fault crash",
        "evicted": "kubernetes evicted", "eviction": "kubernetes evicted",
        "crashloopbackoff": "crash restart", "crashloop": "crash restart",
    },
    "null references": {
        "npe": "null pointer exception", "nullpointerexception": "null pointer exception",
        "nre": "null pointer exception", "nullreferenceexception": "null pointer exception",
        "nil": "null", "undefined": "null undefined",
    },
    "disks and files": {
        "enospc": "space left device disk", "disk": "device disk", "storage": "disk", "volume": "disk",
        "pvc": "persistent volume disk", "ebs": "disk volume", "inode": "disk space", "inodes": "disk space",
        "filesystem": "disk file system", "fs": "disk file system", "mount": "disk", "iops": "disk io",
    },
    "networks, proxies and TLS": {
        "dns": "domain name resolution", "nxdomain": "domain name not found",
        "econnrefused": "connection refused", "econnreset": "connection reset", "etimedout": "timeout",
        "timedout": "timeout", "timed": "timeout",
        "lb": "load balancer", "elb": "load balancer", "alb": "load balancer", "nlb": "load balancer",
        "nginx": "proxy gateway", "envoy": "proxy gateway", "haproxy": "proxy gateway",
        "traefik": "proxy gateway", "ingress": "kubernetes gateway proxy",
        "tls": "tls ssl", "ssl": "tls ssl", "https": "tls ssl", "mtls": "tls ssl certificate",
        "cert": "certificate", "certs": "certificate", "x509": "certificate", "letsencrypt": "certificate",
        "acme": "certificate", "k8s": "kubernetes", "kube": "kubernetes",
    },
    "identity": {
        "auth": "authentication", "authn": "authentication", "authz": "authorization",
        "login": "authentication", "logon": "authentication", "signin": "authentication",
        "ldap": "directory authentication", "sso": "authentication", "oauth": "authentication token",
        "oidc": "authentication token", "saml": "authentication", "jwt": "authentication token",
        "keycloak": "authentication", "okta": "authentication", "mfa": "authentication",
        "unauthorized": "authentication", "password": "credential", "passwords": "credential",
        "passwd": "credential", "creds": "credential",
    },
    "payments": {
        "psp": "payment gateway", "stripe": "payment gateway", "adyen": "payment gateway",
        "braintree": "payment gateway", "paypal": "payment gateway", "acquirer": "payment gateway",
        "issuer": "card payment", "cc": "card", "charge": "payment", "charges": "payment",
        "chargeback": "payment",
    },
    "messaging": {
        "kafka": "kafka broker topic", "redpanda": "kafka broker topic", "msk": "kafka broker topic",
        "confluent": "kafka broker topic", "rabbitmq": "message broker topic", "amqp": "message broker topic",
        "nats": "message broker topic", "pulsar": "message broker topic", "sqs": "message queue topic",
        "pubsub": "message broker topic", "queue": "topic", "mq": "topic",
        "producer": "publish", "publisher": "publish",
    },
    "latency, limits and retries": {
        "latency": "slow", "slowness": "slow", "sluggish": "slow", "laggy": "slow", "lag": "slow",
        "slower": "slow", "slowest": "slow", "p50": "latency slow", "p95": "latency slow", "p99": "latency slow",
        "slo": "service level objective", "sla": "service level agreement",
        "throttle": "rate limit", "throttling": "rate limit", "throttled": "rate limit",
        "ratelimit": "rate limit", "ratelimited": "rate limit", "quota": "rate limit",
        "qps": "request rate", "rps": "request rate", "tps": "request rate",
        "retry": "retrying", "retries": "retrying", "retried": "retrying", "backoff": "retrying backoff",
    },
}


def _http_statuses() -> dict[str, str]:
    # "429" -> "429 too many requests client error": the phrase the vectorizer puts after a
    # status in a log's context, plus the class a person names ("a 5xx", "server errors").
    out = {"4xx": "client error", "5xx": "server error"}
    for status in HTTPStatus:
        if 400 <= status < 600:
            kind = "client error" if status < 500 else "server error"
            out[str(int(status))] = f"{int(status)} {status.phrase.lower()} {kind}"
    return out


# Product names that are also everyday words: the model reads the word, not the product.
PRODUCTS_NAMED_LIKE_WORDS = frozenset({"aurora", "cassandra", "envoy", "oracle", "stripe"})
# Glossary words the embedded default model (all-MiniLM-L6-v2) reads as one word of its
# vocabulary, products aside: it knows what they mean, so the vector side does not append what
# they stand for (appending "upstream" to "peer" or "dependency" pulled questions about retries
# to HTTP 5xx logs). Abbreviations, products and words it splits into pieces (oom, xmx,
# postgres, kafka, login) are expanded. tests/ai/test_semantic_search.py checks this list
# against the model's vocabulary.
MODEL_WORDS = frozenset({
    "cc", "charge", "charges", "db", "dependency", "disk", "downstream", "evicted", "heap", "https", "lb", "mfa",
    "mount", "password", "peer", "pg", "producer", "publisher", "queue", "quota", "ram", "slower", "sql",
    "storage", "throttle", "timed", "tx", "unauthorized", "volume",
})

GLOSSARY: dict[str, str] = {**{key: value for group in _GROUPS.values() for key, value in group.items()},
                            **_http_statuses()}
