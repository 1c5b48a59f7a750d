"""The original benchmark's Flask app, adapted to today's libraries only where it must be.

bench/run serves this file with `gunicorn -w 4 app:app --worker-class {sync,gevent,eventlet,tornado}`.
The 2014 original:

    from flask import Flask
    from flask_redis import FlaskRedis
    REDIS_URL = "redis://:password-string@localhost:6379/0"
    app = Flask(__name__)
    app.config.from_object(__name__)
    redis = FlaskRedis(app, True)
    @app.route("/")
    def index():
        redis.incr("hit", 1)
        return redis.get("hit")

What changed, and why:
- flask-redis is unmaintained; FlaskRedis(app, True) was a thin wrapper that built a
  redis.StrictRedis from REDIS_URL, so this builds the same client with redis-py directly.
- REDIS_URL comes from the environment (the kit starts its own password-protected Redis on a free
  port); the original URL is the fallback.
- redis-py 8 caps a connection pool at 100 connections. Under gevent or eventlet one worker runs up
  to --worker-connections (default 1000) requests at once, each holding a pool connection, so at
  ab -c 500 the 101st concurrent request fails with "Too many connections" and Flask answers 500.
  The pool is therefore sized by REDIS_MAX_CONNECTIONS, which bench/run sets to gunicorn's
  --worker-connections. (The 2014 redis-py had no such cap.)
The view is unchanged: INCR, then GET, two round trips, returning the GET's bytes.

The counting API's read/count routes (bench plan `api`), as a Flask service would write them, with
Abacus's shapes: `/hit/<namespace>/<key>` (`/hit/<key>`: namespace `default`) sends `INCR K:ns:key`
and `EXPIRE K:ns:key TTL` in one pipelined round trip and answers {"value": N}; `/get/...` sends
`GET` and `EXPIRE` (Abacus refreshes the TTL on reads) and answers {"value": N} or 404
{"error": "Key not found"}. A name outside [A-Za-z0-9_.-]{3,64} is 400. COUNTER_TTL (seconds,
default 15552000: Abacus's six months) sets the TTL.
"""
import os
import re

from flask import Flask, jsonify
import redis as redis_py

REDIS_URL = os.environ.get("REDIS_URL", "redis://:password-string@localhost:6379/0")
REDIS_MAX_CONNECTIONS = int(os.environ.get("REDIS_MAX_CONNECTIONS", "1000"))
COUNTER_TTL = int(os.environ.get("COUNTER_TTL", "15552000"))
NAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")

app = Flask(__name__)
app.config.from_object(__name__)
redis = redis_py.Redis.from_url(app.config["REDIS_URL"], max_connections=REDIS_MAX_CONNECTIONS)


@app.route("/")
def index():
    redis.incr("hit", 1)
    return redis.get("hit")


def _counter(namespace, key, command):
    if not (NAME.match(namespace) and NAME.match(key)):
        return jsonify(error="Invalid namespace/key"), 400
    name = f"K:{namespace}:{key}"
    pipe = redis.pipeline(transaction=False)
    pipe.execute_command(command, name)
    pipe.expire(name, COUNTER_TTL)
    value, _ = pipe.execute()
    if value is None:
        return jsonify(error="Key not found"), 404
    return jsonify(value=int(value))


@app.route("/hit/<key>", defaults={"namespace": "default"})
@app.route("/hit/<namespace>/<key>")
def hit(namespace, key):
    return _counter(namespace, key, "INCR")


@app.route("/get/<key>", defaults={"namespace": "default"})
@app.route("/get/<namespace>/<key>")
def get(namespace, key):
    return _counter(namespace, key, "GET")
