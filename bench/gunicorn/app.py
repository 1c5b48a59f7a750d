"""The original benchmark's Flask app, adapted to today's libraries only where it must be; bench/run
serves it with `gunicorn -w 4 app:app -k {sync,gevent,eventlet,tornado}`. The 2014 original's view,
unchanged here: `redis.incr("hit", 1); return redis.get("hit")` (two round trips).

What changed, and why:
- flask-redis is unmaintained; its FlaskRedis(app, True) built a redis.StrictRedis from REDIS_URL,
  so this builds the same client with redis-py directly.
- REDIS_URL comes from the environment (the kit's own Redis); the original URL is the fallback.
- redis-py 8 caps a pool at 100 connections: under gevent or eventlet a worker runs up to
  --worker-connections requests at once, so the 101st concurrent one would get "Too many
  connections" (a 500). REDIS_MAX_CONNECTIONS, which bench/run sets to --worker-connections, sizes it.

The counting API's routes (plan `api`), with Abacus's shapes: `/hit/[<namespace>/]<key>` sends `INCR`
and `EXPIRE` in one pipelined round trip and answers {"value": N}; `/get/...` sends `GET` and `EXPIRE`
and answers {"value": N} or 404. A name outside [A-Za-z0-9_.-]{3,64} is 400; COUNTER_TTL (seconds,
default six months, Abacus's) sets the TTL; the namespace defaults to `default`.
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
