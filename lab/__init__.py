"""The incident lab: real Linux TCP between network namespaces, faults in a router namespace,
captures at two points, ground truth per scenario (`python3 lab/run.py --list`).

Modules: `netlab` (topology, captures, faults), `run` (the scenarios and their truth),
`pcaptools` (reading captures back with tshark), `delayfwd` (the userspace delay forwarder),
`apps/` (the programs run inside the namespaces, started as scripts), `linux_tcp` (the one Python
tcp_model_timeout: the lab's truth and the tests' oracle), `rewrite` (the shapes only another OS or
capture point makes, derived from real lab captures), `encaps` (real captures of the encapsulations
the samples lack, for the fuzz corpus: `python -m lab.encaps OUTDIR`), `minilab/` (the two-namespace
forwarder that made tests/data/reorder-dup-*).
"""
