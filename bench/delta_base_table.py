#!/usr/bin/env python3
# Tables of build/bench/delta_base_bench JSON output (--benchmark_out=FILE --benchmark_out_format=json): per codec
# rung, each base mode's wire bytes vs the mirror per page set (all pairs / warm), all sets together, wire/raw and
# encode MB/s.  usage: bench/delta_base_table.py FILE.json [MORE.json...]
import json, sys, collections
rows = [b for f in sys.argv[1:] for b in json.load(open(f))["benchmarks"]]
by = collections.OrderedDict()
for b in rows:
    _, s, codec, mode = b["name"].split("/", 3)
    by[(s, codec, mode)] = b
sets = sorted({k[0] for k in by}); codecs = []; modes = []
for k in by:
    if k[1] not in codecs: codecs.append(k[1])
    if k[2] not in modes: modes.append(k[2])
for codec in codecs:
    print(f"\n{codec}: wire bytes vs the mirror, all pairs / warm (pairs 2..n); last: all sets together; speed = MB/s encode")
    print("%-22s" % "mode" + "".join("%22s" % s for s in sets) + "%22s %10s %8s" % ("ALL", "wire/raw", "MB/s"))
    for mode in modes:
        line = "%-22s" % mode
        tw = tm = tww = tmw = traw = tns = tb = 0
        ok = True
        for s in sets:
            b = by.get((s, codec, mode))
            if not b: ok = False; line += "%22s" % "-"; continue
            line += "%22s" % ("%.3f / %.3f" % (b["vs_mirror"], b["warm_vs_mirror"]))
            tw += b["wire"]; tm += b["mirror_wire"]; tww += b["warm_wire"]; tmw += b["mirror_warm_wire"]; traw += b["raw"]
            tns += b["cpu_time"] * (1e-9 if b["time_unit"] == "ns" else 1e-6 if b["time_unit"] == "us" else 1e-3); tb += b["raw"]
        if ok:
            line += "%22s %10.4f %8.0f" % ("%.3f / %.3f" % (tw / tm, tww / tmw), tw / traw, tb / tns / 1e6)
        print(line)
