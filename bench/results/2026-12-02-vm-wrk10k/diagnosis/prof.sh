#!/bin/bash
# perf record of hitcore's shards under wrk -c $1 (ad hoc, not committed)
set -e
C=$1; OUT=/tmp/targets-diag/prof-$C; mkdir -p $OUT
cd /work/wt/targets
PW=diag$$; RP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
HP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
ulimit -n 20000
redis-server --port $RP --bind 127.0.0.1 --requirepass $PW --save '' --appendonly no > $OUT/redis.log 2>&1 & RPID=$!
sleep 0.5
REDIS_URL=redis://:$PW@127.0.0.1:$RP/0 target/release/hitcore -b 127.0.0.1:$HP --worker-connections 10000 --backlog 10000 > $OUT/hitcore.log 2>&1 & HPID=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$HP/ && break; sleep 0.2; done
sleep 1
SHARDS=$(pgrep -P $HPID | paste -sd,)
wrk -t 2 -c $C -d 9s --latency http://127.0.0.1:$HP/ > $OUT/wrk.txt 2>&1 & WPID=$!
sleep 3
perf record -F 499 -g -p $SHARDS -o $OUT/perf.data -- sleep 4 > $OUT/perf-record.log 2>&1
wait $WPID
kill -TERM $HPID; wait $HPID || true
kill -TERM $RPID; wait $RPID || true
perf report -i $OUT/perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -45 > $OUT/top.txt
perf report -i $OUT/perf.data --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep '%' | head -8 > $OUT/dso.txt
grep Requests/sec $OUT/wrk.txt
