"""aiohttp's gunicorn workers, keeping gunicorn's ``backlog`` on the listening socket.

gunicorn's master listens with ``backlog`` (``--backlog``, CHAT_BACKLOG), but aiohttp's worker
starts each site with ``web.SockSite(runner, sock)``, whose ``listen()`` resets the shared socket to
SockSite's default of 128, every time a worker (re)boots. A worker here listens once more with
gunicorn's backlog when it first reports alive, which aiohttp's worker does right after its sites
have started, with no await in between.

Imported by gunicorn by name (``worker_class`` in ``chat.gunicorn_conf``), so ``python -m chat``
needs gunicorn only when it runs more than one worker.
"""

from __future__ import annotations

from aiohttp.worker import GunicornUVLoopWebWorker, GunicornWebWorker


class Worker(GunicornWebWorker):
    _backlog_kept = False

    def notify(self) -> None:
        if not self._backlog_kept:
            self._backlog_kept = True
            for sock in self.sockets:
                sock.listen(self.cfg.backlog)
            self.log.info("Worker serving, backlog %d (pid: %d)", self.cfg.backlog, self.pid)
        super().notify()


class UVLoopWorker(Worker, GunicornUVLoopWebWorker):
    pass
