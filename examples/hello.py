"""Hello, durable world: an orchestration that calls an activity three times, in order.

python examples/hello.py            # starts a private Redis
REDIS_URL=redis://localhost:6379/0 python examples/hello.py
"""

from __future__ import annotations

import anyio
from _support import finish, in_process_worker, redis_url, unique_namespace

from durable_redis import ActivityContext, App, Client, OrchestrationContext

app = App("hello")


@app.activity
def greet(ctx: ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


@app.orchestration
async def hello_cities(ctx: OrchestrationContext, cities: list[str]) -> list[str]:
    greetings = []
    for city in cities:
        greetings.append(await ctx.call_activity(greet, city))
    return greetings


async def main(url: str) -> list[str]:
    namespace = unique_namespace("hello")
    async with (
        in_process_worker(app, url, namespace),
        Client.from_url(url, namespace=namespace, app=app) as client,
    ):
        instance_id = await client.start(hello_cities, ["Tokyo", "Seattle", "London"])
        print(f"started hello_cities as {instance_id}")
        result: list[str] = await client.wait_for_completion(instance_id, timeout=20)
        return result


if __name__ == "__main__":
    with redis_url() as url:
        greetings = anyio.run(main, url)
    for line in greetings:
        print(" ", line)
    finish(
        greetings == ["Hello, Tokyo!", "Hello, Seattle!", "Hello, London!"],
        f"hello_cities returned {len(greetings)} greetings",
    )
