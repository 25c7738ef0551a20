"""Many requests at once, more than the API's worker threads: every one is answered.

A request holds its database session from authentication to the end of its response's validation, which
runs in a worker thread of its own; if requests waiting for a thread held pooled connections while the
threads waited for connections, they would block each other until the pool's timeout failed them."""

import asyncio

import anyio.to_thread
import httpx

API = "/api/v1"
REQUESTS = 40
THREADS = 2


def test_more_requests_than_worker_threads_are_all_answered(client, world):
    async def run() -> list[int]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            calls = [
                http.get(f"{API}/schools", headers=world.user("county")) if n % 2
                else http.get(f"{API}/gateway/downlink", headers=world.gateway("s1"))
                for n in range(REQUESTS)
            ]
            answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=120)
        return [answer.status_code for answer in answers]

    assert asyncio.run(run()) == [200] * REQUESTS
