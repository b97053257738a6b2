import socket, time, random
A=('127.0.0.1',19555)
def t(name, data, shut=True, delay=0):
    s=socket.create_connection(A); s.settimeout(5)
    try:
        s.sendall(data)
        if shut: s.shutdown(socket.SHUT_WR)
    except Exception as e: print(name,'send',e)
    out=b''
    try:
        while True:
            d=s.recv(65536)
            if not d: break
            out+=d
    except Exception as e: out+=('<%s>'%type(e).__name__).encode()
    s.close(); print(name, repr(out[:100]), len(out))
t('get', b'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t('head', b'HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
t('post', b'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello')
t('get body', b'GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello')
t('get chunked', b'GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n')
t('garbage', bytes(random.getrandbits(8) for _ in range(5000)))
t('nul', b'GET /metr\0ics HTTP/1.1\r\nHost: x\r\n\r\n')
t('longurl', b'GET /'+b'a'*100000+b' HTTP/1.1\r\nHost: x\r\n\r\n')
t('longhdr', b'GET /metrics HTTP/1.1\r\nHost: x\r\nX: '+b'a'*100000+b'\r\n\r\n')
t('many hdr', b'GET /metrics HTTP/1.1\r\nHost: x\r\n'+b'X: a\r\n'*20000+b'\r\n')
t('http10', b'GET /metrics HTTP/1.0\r\n\r\n')
t('http09', b'GET /metrics\r\n\r\n')
t('pipelined', b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'*50)
t('query', b'GET /metrics?x=%00%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t('pct', b'GET /metrics%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t('pct2', b'GET /%6detrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
t('cl huge', b'GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n')
t('cl neg', b'GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n')
t('no shut', b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n', shut=False)
