import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.2.1", 9000)); s.listen(5)
while True:
    c, _ = s.accept()
    while True:
        d = c.recv(65536)
        if not d: break
    c.close()
