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
"""
import os

from flask import Flask
import redis as redis_py

REDIS_URL = os.environ.get("REDIS_URL", "redis://:password-string@localhost:6379/0")
REDIS_MAX_CONNECTIONS = int(os.environ.get("REDIS_MAX_CONNECTIONS", "1000"))

app = Flask(__name__)
app.config.from_object(__name__)
redis = redis_py.Redis.from_url(app.config["REDIS_URL"], max_connections=REDIS_MAX_CONNECTIONS)


@app.route("/")
def index():
    redis.incr("hit", 1)
    return redis.get("hit")
