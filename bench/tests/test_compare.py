"""Checks bench/compare's parsing and arithmetic: kit/compare_plan.py reads plans (every plan in
bench/plans/ must parse), fills placeholders and checks goals; kit/measure.py's window_figures()
turns two /proc and INFO readings into CPU shares and batch sizes; kit/compare_report.py renders a
recorded summary (tests/fixtures/compare-summary.json: the since retired observability-cost plan,
two rounds of wrk -c 50 for 3 s against a debug build on a busy machine; its numbers mean nothing,
its shape is real); and the static nginx config the kit writes (kit/servers.py: nginx_limits,
nginx_config) for {nginx_conf} and bench/run. Standard library only, no network, well under a second.

    python3 bench/tests/test_compare.py        (or: python3 -m unittest discover -s bench/tests)
"""
import json
import sys
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from kit import attack, compare, compare_plan, compare_report, hostile, measure, redisctl, servers  # noqa: E402
from kit.compare_plan import PlanError, parse_plan  # noqa: E402

SUMMARY = json.loads((Path(__file__).resolve().parent / "fixtures" / "compare-summary.json").read_text())

GOOD = """
# a comment
title   Two builds side by side
base    old
variant old  @shards=2  REDIS_URL={redis_url}  {baseline} -b {bind} -w 2   # a trailing comment
variant new  @shards=2  REDIS_URL={redis_url} RUST_LOG=info  {hitcore} -b {bind}
variant peer {tokio} -b {bind} -t 2
variant log  @procs=3  {hitcore} -b {bind} --access-logfile '{tmp}/access.log' --access-logformat '%(h)s "%(r)s"'
goal new >= 0.98 old
"""


class Plans(unittest.TestCase):
    def test_a_plan_with_every_statement(self):
        plan = parse_plan(GOOD)
        self.assertEqual(plan.title, "Two builds side by side")
        self.assertEqual(plan.base, "old")
        self.assertEqual([v.name for v in plan.variants], ["old", "new", "peer", "log"])
        old, new, peer, log = plan.variants
        self.assertEqual((old.shards, old.procs, old.uses_redis), (2, 3, True))
        self.assertEqual(old.env, {"REDIS_URL": "{redis_url}"})
        self.assertEqual(old.argv, ["{baseline}", "-b", "{bind}", "-w", "2"])
        self.assertEqual(new.env, {"REDIS_URL": "{redis_url}", "RUST_LOG": "info"})
        self.assertEqual((peer.shards, peer.procs, peer.uses_redis), (0, 1, False))
        self.assertEqual(log.procs, 3)
        self.assertEqual(log.argv[-1], '%(h)s "%(r)s"')  # shell quoting kept the spaces and quotes
        self.assertFalse(log.uses_redis)  # names no Redis: nothing to count in
        self.assertEqual(plan.goals[0].text(), "new ≥ 0.98× old")
        self.assertIn("baseline", plan.placeholders())

    def test_https_and_close(self):
        plan = parse_plan("variant a @https @close @shards=2  {hitcore} --certfile {tls_cert} --keyfile {tls_key}")
        a = plan.variants[0]
        self.assertEqual((a.https, a.close, a.shards), (True, True, 2))
        self.assertEqual({"tls_cert", "tls_key"}, plan.placeholders() - {"hitcore"})
        self.assertFalse(a.uses_redis)  # a certificate is not a Redis
        with self.assertRaises(PlanError):
            parse_plan("variant a @https=1 x")
        self.assertEqual(parse_plan("variant a @https @flood=2 x").variants[0].flood, 2)
        for bad in ("variant a @flood=2 x", "variant a @https @flood=0 x"):
            with self.assertRaises(PlanError):
                parse_plan(bad)

    def test_the_base_defaults_to_the_first_variant(self):
        self.assertEqual(parse_plan("variant a x\nvariant b y").base, "a")

    def test_every_shipped_plan_parses(self):
        plans = sorted((BENCH / "plans").glob("*.plan"))
        self.assertGreaterEqual(len(plans), 3)
        for path in plans:
            with self.subTest(plan=path.name):
                plan = parse_plan(path.read_text())
                self.assertTrue(plan.title)
                unknown = plan.placeholders() - compare_plan.KIT_PLACEHOLDERS - {"baseline", "premerge"}  # given with --set
                self.assertEqual(unknown, set())

    def test_mistakes_name_the_line_and_what_is_wrong(self):
        cases = {
            "variant a": "line 1: variant a: no command",
            "variant a x\nvariant a y": "line 2: variant a is defined twice",
            "variant a @shards=0 x": "@shards needs a whole number",
            "variant a @shardz=2 x": "unknown option '@shardz=2'",
            "variant a @scrape {hitcore}": "unknown option '@scrape'",
            "variant a/b x": "variant name 'a/b'",
            "variant a x\nbase b": "'b' is not a variant",
            "variant a x\ngoal a > 1 a": "goal takes the form",
            "variant a x\ngoal a >= fast a": "'fast' is not a number",
            "variant a x\ngoal a >= 1 c": "'c' is not a variant",
            "colour blue": "unknown statement 'colour'",
            "variant a 'x": "line 1: No closing quotation",
            "# nothing": "no variant",
        }
        for text, message in cases.items():
            with self.subTest(text=text):
                with self.assertRaises(PlanError) as caught:
                    parse_plan(text)
                self.assertIn(message, str(caught.exception))

    def test_fill_and_sets(self):
        values = {"bind": "127.0.0.1:8000", "tmp": "/t"}
        self.assertEqual(compare_plan.fill("--access-logfile={tmp}/a.log", values), "--access-logfile=/t/a.log")
        self.assertEqual(compare_plan.fill("%(h)s {not a placeholder}", values), "%(h)s {not a placeholder}")
        with self.assertRaisesRegex(PlanError, r"\{baseline\} has no value \(give it with --set baseline=VALUE\)"):
            compare_plan.fill("{baseline}", values)
        self.assertEqual(compare_plan.parse_sets(["baseline=/a=b", "tokio=/p"]), {"baseline": "/a=b", "tokio": "/p"})
        for bad, message in (("baseline", "expected NAME=VALUE"), ("Base=x", "expected NAME=VALUE"),
                             ("redis_url=x", "the kit fills that placeholder itself")):
            with self.subTest(bad=bad):
                with self.assertRaisesRegex(PlanError, message):
                    compare_plan.parse_sets([bad])

    def test_per_cpu_shards_nginx_readiness_and_defaults(self):
        plan = parse_plan("defaults --connections 10000 --duration 10\n"
                          "variant h @shards=cpus REDIS_URL={redis_url} {hitcore} -b {bind} --worker-connections {connections}\n"
                          "variant n nginx -p {tmp}/ -c {nginx_conf}\n"
                          "variant n3 @procs=2 nginx -c {nginx_conf}\n"
                          "variant t {tokio} -b {bind} -t {cpus}\n"
                          "variant w @shards=2 {hitcore} -w 2")
        self.assertEqual(plan.defaults, ["--connections", "10000", "--duration", "10"])
        h, n, n3, tk, w = plan.variants
        self.assertEqual(h.readiness(16), (17, 16))   # hitcore's default layout: a shard per CPU
        self.assertEqual(n.readiness(2), (3, 0))      # nginx: its master and a worker per CPU
        self.assertEqual(n3.readiness(2), (2, 0))     # @procs wins
        self.assertEqual(tk.readiness(2), (1, 0))
        self.assertEqual(w.readiness(16), (3, 2))
        self.assertEqual(plan.placeholders() - compare_plan.KIT_PLACEHOLDERS, set())
        for text, message in (("defaults --connections", "pairs"), ("defaults --port 80", "'--port' is not one of"),
                              ("defaults --connections many", "needs a whole number"),
                              ("variant a @shards=cpu x", "@shards needs a whole number")):
            with self.subTest(text=text):
                with self.assertRaisesRegex(PlanError, message):
                    parse_plan(text + "\nvariant z x")

    def test_the_plan_defaults_come_before_the_command_line(self):
        plan = parse_plan((BENCH / "plans" / "wrk10k.plan").read_text())
        args = compare.parse_args(plan.defaults + ["p.plan", "--duration", "3"])
        self.assertEqual((args.connections, args.duration, args.rounds), (10000, 3, 3))
        self.assertEqual(plan.base, "nginx")
        self.assertEqual(plan.goals[0].text(), "hitcore ≥ 0.9× nginx")

    def test_whole_number_options_are_checked_by_the_parser(self):
        import argparse
        self.assertEqual(compare.at_least(2)("10"), 10)
        for bad in ("1", "x", "-3", "2.5"):
            with self.subTest(bad=bad), self.assertRaises(argparse.ArgumentTypeError):
                compare.at_least(2)(bad)
        args = compare.parse_args(["p.plan", "--quick", "--only", "a,b"])
        self.assertEqual((args.quick, args.only, args.rounds), (True, ["a", "b"], 3))  # compare.main makes it 1 round

    def test_goals(self):
        plan = parse_plan("variant a x\nvariant b y\nvariant c z\ngoal a >= 0.8 b\ngoal b >= 1.3 a\ngoal c >= 1 a")
        checked = compare_plan.check_goals(plan, {"a": {"rps": 90.0}, "b": {"rps": 100.0}, "c": {}})
        self.assertEqual([(g["ratio"], g["met"]) for g in checked], [(0.9, True), (1.111, False), (None, None)])

    def test_a_p99_goal_wants_the_lower_figure(self):
        plan = parse_plan("variant a x\nvariant b y\ngoal a p99 <= 1.0 b\ngoal b p99 <= 1 a")
        self.assertEqual(plan.goals[0].text(), "a p99 ≤ 1× b")
        checked = compare_plan.check_goals(plan, {"a": {"p99_ms": 2.0}, "b": {"p99_ms": 4.0}})
        self.assertEqual([(g["ratio"], g["met"]) for g in checked], [(0.5, True), (2.0, False)])
        for bad in ("goal a p99 >= 1 b", "goal a p50 <= 1 b", "goal a <= 1 b"):
            with self.assertRaises(compare_plan.PlanError):
                parse_plan("variant a x\nvariant b y\n" + bad)

    def test_attack_option(self):
        plan = parse_plan("variant a @attack=slowloris:5000 x\nvariant b y")
        self.assertEqual([v.attack for v in plan.variants], [5000, 0])
        for bad in ("@attack=slowloris", "@attack=ddos:5", "@attack=slowloris:0", "@attack=pipeline:10"):
            with self.assertRaises(compare_plan.PlanError):
                parse_plan(f"variant a {bad} x")


class Only(unittest.TestCase):
    def test_only_keeps_the_named_variants_and_their_goals(self):
        plan = parse_plan("base b\nvariant a x\nvariant b y\nvariant c z\ngoal a >= 1 b\ngoal c >= 1 a")
        plan.only(["c", "a"])
        self.assertEqual([v.name for v in plan.variants], ["a", "c"])   # the plan's order
        self.assertEqual([g.text() for g in plan.goals], ["c ≥ 1× a"])
        self.assertEqual(plan.base, "a")                                # b left out: the first kept
        with self.assertRaises(PlanError):
            plan.only(["d"])

    def test_hostile_command_lines_become_compare_ones(self):
        vs = hostile.translate(["--hitcore", "/x", "--only", "vs-nginx"])
        self.assertTrue(vs[0].endswith("plans/hostile-vs-nginx.plan"))
        self.assertEqual(vs[1:], ["--name", "hostile-vs-nginx", "--hitcore", "/x"])
        self.assertEqual(hostile.translate([])[1:], ["--name", "hostile-vs-nginx"])
        quick = compare.parse_args(hostile.translate(["--quick", "--only", "nginx,nginx-slowloris"]))
        self.assertEqual((quick.quick, quick.only, quick.name), (True, ["nginx", "nginx-slowloris"], "hostile-vs-nginx"))
        attacked = [v for v in parse_plan(hostile.PLAN.read_text()).variants if v.attack]
        self.assertEqual([v.attack for v in attacked], [5000] * 4)


class AttackWindow(unittest.TestCase):
    # an attacker's counter lines, every 0.5 s (attackers.py's shape)
    LINES = [{"t": 10.0, "open": 100, "opened": 100, "closed_by_server": 0},
             {"t": 10.5, "open": 90, "opened": 110, "closed_by_server": 10},
             {"t": 11.0, "open": 80, "opened": 130, "closed_by_server": 30},
             {"t": 11.5, "open": 100, "opened": 150, "closed_by_server": 50},
             {"t": 12.0, "open": 100, "opened": 150, "closed_by_server": 50, "final": True}]

    def test_levels_averaged_totals_grown_over_the_window(self):
        w = attack.window(self.LINES, 10.4, 11.6)
        self.assertEqual(w["attack_open_avg"], 90.0)                # 90, 80, 100 inside the window
        self.assertEqual(w["attack_opened"], 50)                    # 150 at 12.0 less 100 at 10.0
        self.assertEqual(w["attack_closed_by_server"], 50)
        self.assertEqual(w["attack_closed_per_s"], 25.0)            # over the 2 s between those lines
        self.assertEqual(attack.window([], 0.0, 1.0), {})



class NginxConfig(unittest.TestCase):
    def test_bench_runs_limits_are_unchanged(self):
        self.assertEqual(servers.nginx_limits(None), {"worker_connections": 4096, "rlimit_nofile": 16384,
                                                      "backlog": 2048})

    def test_limits_for_many_clients(self):
        # Each worker can take every client (nginx does not spread accepts evenly), plus 1,024, in KiB steps.
        self.assertEqual(servers.nginx_limits(10000), {"worker_connections": 11264, "rlimit_nofile": 22528,
                                                       "backlog": 10000})
        self.assertEqual(servers.nginx_limits(5100)["worker_connections"], 6144)
        self.assertEqual(servers.nginx_limits(500), servers.nginx_limits(None) | {"backlog": 2048})
        # An unprivileged master cannot go past its hard limit: the descriptor limit stops there,
        # never below worker_connections.
        self.assertEqual(servers.nginx_limits(10000, nofile_hard=20000)["rlimit_nofile"], 20000)
        self.assertEqual(servers.nginx_limits(10000, nofile_hard=4096)["rlimit_nofile"], 11264)
        self.assertEqual(servers.nginx_limits(100000)["backlog"], 65535)
        with self.assertRaises(ValueError):
            servers.nginx_limits(0)

    def test_the_config_written(self):
        text = servers.nginx_config(servers.NGINX_TEMPLATE.read_text(), workers=2, prefix="/tmp/x",
                                    bind="127.0.0.1:8080", limits=servers.nginx_limits(10000, 20000))
        for line in ("worker_processes 2;", "worker_rlimit_nofile 20000;", "worker_connections 11264;",
                     "listen 127.0.0.1:8080 backlog=10000;", 'return 200 "123456";', "pid /tmp/x/nginx.pid;"):
            self.assertIn(line, text)
        # The operator's defaults stay: nothing shortens or lengthens how long a slow head may take.
        directives = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        self.assertFalse([line for line in directives if "client_header_timeout" in line or "_timeout" in line
                          and "keepalive" not in line])
        self.assertFalse([line for line in directives if "{" in line and not line.endswith("{")])  # all filled

    def test_compare_writes_it_for_its_placeholder(self):
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            path, _limits = servers.write_nginx_conf(Path(folder), "127.0.0.1:9", 3, 10000)
            text = path.read_text()
            self.assertTrue((Path(folder) / "logs").is_dir())
        self.assertIn("worker_processes 3;", text)
        self.assertIn("worker_connections 11264;", text)
        self.assertNotIn("ssl", text)

    def test_the_flood_rate_is_per_real_second(self):
        import subprocess
        said = ("1255 connections in 0.90s; 1394.44 connections/user sec, bytes read 0\n"
                "1255 connections in 3 real seconds, 0 bytes read per connection\n")
        clients = [subprocess.Popen(["printf", said], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        self.assertEqual(compare.flood_rate(clients, 2), 836.7)
        self.assertIsNone(compare.flood_rate([subprocess.Popen(["true"], stdout=subprocess.PIPE, text=True)], 2))

    def test_nginx_over_https(self):
        text = servers.nginx_config(servers.NGINX_TEMPLATE.read_text(), workers=2, prefix="/tmp/x",
                                    bind="127.0.0.1:8443", limits=servers.nginx_limits(100), tls=("/c.pem", "/k.pem"))
        for line in ("listen 127.0.0.1:8443 backlog=2048 ssl;", "ssl_certificate /c.pem;",
                     "ssl_certificate_key /k.pem;", "ssl_protocols TLSv1.2 TLSv1.3;"):
            self.assertIn(line, text)


class Window(unittest.TestCase):
    def reading(self, t, redis, server, machine, counter, incrby, incr=0, wait=0, usec=0):
        return {"t": t, "redis": redis, "replica": 0.0, "server": server, "wrk": 0.5 * t, "machine": machine,
                "counter": counter, "calls": {"incrby": incrby, "incr": incr, "wait": wait, "get": 99},
                "usec": {"incrby": usec}}

    def test_cpu_shares_and_batch_size(self):
        a = self.reading(10.0, redis=1.0, server=3.0, machine=20.0, counter=1000, incrby=10, usec=100)
        b = self.reading(12.0, redis=1.1, server=5.0, machine=24.0, counter=201000, incrby=3410, wait=3400, usec=3500)
        w = measure.window_figures(a, b)
        self.assertEqual(w["window_s"], 2.0)
        self.assertEqual(w["redis_cpu_pct"], 5.0)       # 0.1 s of CPU in 2 s
        self.assertEqual(w["server_cpu_pct"], 100.0)
        self.assertEqual(w["wrk_cpu_pct"], 50.0)
        self.assertEqual(w["machine_cpu_pct"], 200.0)
        self.assertEqual(w["other_cpu_pct"], 45.0)      # 4 s busy, 3.1 s of it ours (Redis, server, wrk)
        self.assertEqual(w["window_increments"], 200000)
        self.assertEqual(w["window_rps"], 100000.0)
        self.assertEqual((w["incrby_calls"], w["wait_calls"]), (3400, 3400))
        self.assertEqual(w["requests_per_command"], 58.8)
        self.assertEqual(w["commands_per_s"], 1700.0)
        self.assertEqual(w["redis_cpu_us_per_command"], 29.41)
        self.assertEqual(w["redis_cpu_pct_per_100k_rps"], 5.0)
        self.assertEqual(w["redis_exec_us_per_command"], 1.0)
        self.assertEqual(w["server_cpu_us_per_request"], 10.0)  # 2 s of CPU for 200,000 requests

    def test_no_commands_means_no_batch_size(self):
        a = self.reading(0.0, 0, 0, 0, counter=0, incrby=0)
        w = measure.window_figures(a, dict(a, t=1.0))
        self.assertIsNone(w["requests_per_command"])
        self.assertIsNone(w["redis_cpu_pct_per_100k_rps"])
        self.assertEqual(measure.window_figures(a, a), {})

    def test_commandstats_usec(self):
        info = ("# Commandstats\r\ncmdstat_incrby:calls=3410,usec=3500,usec_per_call=1.03,rejected_calls=0\r\n"
                "cmdstat_wait:calls=3400,usec=2000,usec_per_call=0.59,rejected_calls=0\r\n")
        self.assertEqual(redisctl.parse_commandstats(info), {"incrby": 3410, "wait": 3400})
        self.assertEqual(redisctl.parse_commandstats(info, "usec"), {"incrby": 3500, "wait": 2000})


class Report(unittest.TestCase):
    def test_a_recorded_summary(self):
        text = compare_report.render(SUMMARY)
        # The machine comes first, then the throughput, the goals, Redis's side and every round.
        order = [text.index(h) for h in ("## Machine", "## Throughput", "## Goals", "## Redis's side",
                                         "## CPU during", "## Every round", "## The plan")]
        self.assertEqual(order, sorted(order))
        self.assertIn("| off | 6,982 | 6,239–7,725 | 1.000 |", text)
        self.assertIn("| metrics ≥ 0.98× off | 8,226 against 6,982 | 1.178 | **yes** |", text)
        self.assertIn("| access-log | 1 | 19,007 | 19,014 | +7 | 0 |", text)
        self.assertIn("| metrics | 2 | 29,605 | 29,655 | +50 |", text)
        self.assertIn("| Load average at start / end | 10.09, 8.23, 8.91 / 10.62, 8.5, 8.98 |", text)
        self.assertIn("| Each round's start (UTC, 1-minute load) | 05:26:33 10.09, 05:26:45 10.37 |", text)
        self.assertNotIn("**LOST", text)
        # Each round's server CPU per request (added to the fixture, which predates the field).
        self.assertIn("| off | 24 | 30.79 · 33.76 (median 32.27) |", text)

    def test_the_attackers_table(self):
        summary = json.loads(json.dumps(SUMMARY))
        self.assertNotIn("## Hostile clients", compare_report.render(summary))
        row = summary["rows"][1]
        row["rounds"][0]["attack"] = "slowloris:5000"
        row["tests"]["wrk"].update(attack_ramp_s=0.8, attack_open_avg=4103.0, attack_closed_per_s=1600.0,
                                   attacker_cpu_pct=8.0, rss_before_attack_kib=27880, peak_rss_kib=56024,
                                   kib_per_attack_conn=6.86)
        text = compare_report.render(summary)
        self.assertLess(text.index("## CPU during"), text.index("## Hostile clients beside wrk"))
        self.assertIn("| metrics | slowloris:5000 | 0.8 | 4,103 | 1,600 | 8 | 27,880 → 56,024 | 6.86 |", text)

    def test_the_connection_spread_shows_for_many_connections(self):
        summary = json.loads(json.dumps(SUMMARY))
        wrk = summary["rows"][0]["rounds"][0]["tests"]["wrk"]
        wrk.update(server_fds=[12, 5023, 4990], ss_tcp="TCP:   10012 (estab 10005, closed 3, orphaned 0, timewait 3)")
        self.assertNotIn("## Connections per process", compare_report.render(summary))  # c=50: not shown
        summary["settings"]["connections"] = 10000
        text = compare_report.render(summary)
        self.assertIn("## Connections per process", text)
        self.assertIn("| off | 1 | 12 / 5,023 / 4,990 | – / – | TCP:   10012 (estab 10005", text)
        wrk.update(listen_overflows=1200, listen_drops=1200)
        summary["notes"] = ["hitcore's shards were CPU-bound."]
        text = compare_report.render(summary)
        self.assertIn("| off | 1 | 12 / 5,023 / 4,990 | 1,200 / 1,200 |", text)
        self.assertIn("## Notes\n\nhitcore's shards were CPU-bound.\n", text)
        self.assertLess(text.index("## Notes"), text.index("## Redis's side"))

    def test_listen_counters_from_proc_net_netstat(self):
        text = ("TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPBacklogDrop\n"
                "TcpExt: 0 0 1234 1240 7\nIpExt: InNoRoutes\nIpExt: 0\n")
        self.assertEqual(measure.parse_netstat(text), {"listen_overflows": 1234, "listen_drops": 1240})
        self.assertEqual(measure.parse_netstat("IpExt: a\nIpExt: 1\n"), {})
        self.assertTrue(set(measure.listen_counters()) <= {"listen_overflows", "listen_drops"})

    def test_a_lost_increment_and_a_failed_goal_show(self):
        summary = json.loads(json.dumps(SUMMARY))
        summary["rows"][0]["rounds"][0]["tests"]["wrk"]["counter_after"] = 23000
        summary["goals"][1]["met"] = False
        text = compare_report.render(summary)
        self.assertIn("**LOST 389**", text)
        self.assertIn("| **no** |", text)



if __name__ == "__main__":
    unittest.main()
