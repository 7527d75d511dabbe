import socket, sys, time
mode = sys.argv[1]
c = socket.create_connection(("10.77.2.1", 9000))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode == "hb":
    for i in range(60):
        c.send(b"HEARTBEAT %010d\n" % i); time.sleep(0.06)
elif mode == "burst":
    for i in range(30):
        for j in range(8):
            c.send(b"M%03d-%d " % (i, j) + b"x" * 90); time.sleep(0.0005)
        time.sleep(0.05)
elif mode == "bulk":
    buf = b"x" * 65536
    for i in range(300): c.sendall(buf)
c.close()
