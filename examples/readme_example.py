import yieldloop


@yieldloop.coroutine
def get_page(url, delay):  # a generator coroutine: it yields requests
    yield ("sleep", delay)  # the same as: yield from yieldloop.sleep(delay)
    return f"<html>{url}</html>"


async def fetch(url, delay, pages):
    with yieldloop.move_on_after(0.5) as scope:  # give up after 0.5 s
        pages[url] = await get_page(url, delay)
    if scope.cancelled_caught:
        pages[url] = "timed out"


async def main():
    pages = {}
    async with yieldloop.TaskGroup() as tg:  # waits for all its tasks
        tg.spawn(fetch, "fast.example", 0.1, pages)
        tg.spawn(fetch, "slow.example", 0.3, pages)
        tg.spawn(fetch, "stuck.example", 60, pages)
    print(pages)  # fast, slow, then stuck timed out, after 0.5 s in all
    both = await yieldloop.gather(get_page("a", 0.2), get_page("b", 0.1))
    print(both)  # both pages, in the order given, after 0.2 s


yieldloop.run(main)
