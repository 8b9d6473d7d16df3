import asyncio, time, httpx, threading
from gateway_server import running_gateway
from probe_process import running_probe
from sim_process import running_sim

def test_overload(redis_url):
    with (running_sim("--slots", "2", "--decode-rate", "200") as sim,
          running_probe(redis_url, sim.url, interval=0.3, timeout=0.5),
          running_gateway(upstream_url=sim.url, redis_url=redis_url, health_interval=0.3,
                          global_limit=10**6, visitor_limit=10**6, max_inflight=2, owner_reserved_inflight=0) as gw):
        time.sleep(2)
        seen = []
        stop = time.monotonic() + 12
        def watch():
            while time.monotonic() < stop:
                r = httpx.get(gw.url + "/readyz").json()
                seen.append((round(time.monotonic(),1), r["outage"], r["breaker"]))
                time.sleep(0.1)
        t = threading.Thread(target=watch); t.start()
        statuses = []
        async def one(c, n):
            async with c.stream("POST", gw.url + "/api/chat", json={"input": "hi"}, headers={"X-Thumbmark-Id": f"v{n}"}) as r:
                statuses.append(r.status_code); await r.aread()
        async def load():
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=500)) as c, asyncio.TaskGroup() as g:
                n = 0
                while time.monotonic() < stop:
                    n += 1; g.create_task(one(c, n)); await asyncio.sleep(1/ 15)
        asyncio.run(load()); t.join()
        print({s: statuses.count(s) for s in set(statuses)}, sim.stats())
        print([s for s in seen if s[1] or s[2] != "closed"][:20], len(seen))
