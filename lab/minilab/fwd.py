# userspace delaying forwarder between two interfaces in netns tsh-r (ip_forward off)
# usage: fwd.py DELAY_MS DROP_IDX[,IDX...]   (IDX = n-th A->B TCP data packet, 1-based; '-' none)
import socket, select, heapq, time, sys, struct, subprocess, json
delay = float(sys.argv[1]) / 1000
drops = set() if sys.argv[2] == '-' else {int(x) for x in sys.argv[2].split(',')}
late = set() if len(sys.argv) < 4 or sys.argv[3] == '-' else {int(x) for x in sys.argv[3].split(',')}
dups = set() if len(sys.argv) < 5 or sys.argv[4] == '-' else {int(x) for x in sys.argv[4].split(',')}
extra = 0.008
def mac(ns, dev):
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", dev], capture_output=True, text=True).stdout
    return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))
ma, mb = mac("tsh-a", "tshva"), mac("tsh-b", "tshvb")
mra, mrb = mac("tsh-r", "tshvra"), mac("tsh-r", "tshvrb")
sa = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)); sa.bind(("tshvra", 0))
sb = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)); sb.bind(("tshvrb", 0))
q = []; n = 0; seqno = 0
while True:
    now = time.monotonic()
    to = max(0, q[0][0] - now) if q else 0.5
    r, _, _ = select.select([sa, sb], [], [], to)
    for s in r:
        pkt, addr = s.recvfrom(65536)
        if addr[2] == socket.PACKET_OUTGOING: continue
        ip = pkt[14:]
        if ip[9] != 6: continue
        if s is sa:
            ihl = (ip[0] & 15) * 4; doff = (ip[ihl + 12] >> 4) * 4
            plen = struct.unpack("!H", ip[2:4])[0] - ihl - doff
            out = (sb, mb + mrb + pkt[12:])
            if plen > 0:
                n += 1
                if n in drops: continue
                if n in late:
                    seqno += 1; heapq.heappush(q, (time.monotonic() + delay + extra, seqno, out)); continue
                if n in dups:
                    seqno += 1; heapq.heappush(q, (time.monotonic() + delay, seqno, out))
        else:
            out = (sa, ma + mra + pkt[12:])
        seqno += 1
        heapq.heappush(q, (time.monotonic() + delay, seqno, out))
    now = time.monotonic()
    while q and q[0][0] <= now:
        _, _, (s, frame) = heapq.heappop(q); s.send(frame)
