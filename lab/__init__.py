"""The incident lab: real Linux TCP between network namespaces, faults in a router namespace,
captures at two points, ground truth per scenario (`python3 lab/run.py --list`).

Modules: `netlab` (topology, captures, faults), `run` (the scenarios and their truth),
`pcaptools` (reading captures back with tshark), `delayfwd` (the userspace delay forwarder),
`apps/` (the programs run inside the namespaces, started as scripts).
"""
