"""`moto_server`, its requests taking effect one at a time, as on S3.

moto checks a conditional write's precondition and then stores the object with nothing
between them (moto 5.2.5, `s3/responses.py`, `put_object`), so two requests served at once
can both pass `If-Match` and one update is lost, where S3 makes the check and the write one
step. The tests race many writers through the s3 plugin's pool of instances, so this serves
moto's application under one lock: connections stay concurrent, each request is applied alone.

Usage: python moto_serial.py -H HOST -p PORT (the arguments of `moto_server`).
"""

import sys
import threading

import moto.server

serve = moto.server.run_simple


def run_simple(host, port, app, **options):
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    serve(host, port, one_at_a_time, **options)


moto.server.run_simple = run_simple
moto.server.main(sys.argv[1:])
