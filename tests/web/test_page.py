"""The chat page in a real browser: two and three datasites, each serving its own page.

Real clients in a local workspace (real syft-rpc requests, syft-event watchers, SQLite);
the system Chromium, one browser context per datasite. The ``open_page`` fixture fails a
test whose page made any request to another server, raised, or opened a dialog.
"""

from __future__ import annotations

import statistics

import pytest

from syft_chat.testing import wait_for

ALICE = "alice@openmined.org"
BOB = "bob@openmined.org"
CAROL = "carol@openmined.org"
HOSTILE = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.browser


def _median_latency(sender, receiver, count: int) -> list[float]:
    """Send ``count`` messages from one page; the time each took to show on the other."""
    times = []
    for i in range(count):
        text = f"latency probe {i}"
        started = sender.type_and_send(text)
        times.append(receiver.wait_for_text(text, timeout=2_000) - started)
    return times


def test_two_pages_live_send_delivery_reaction_and_edit(net, open_page, shot, capsys):
    net[ALICE].send_message(BOB, "hi bob, this is the start of our chat")
    alice, bob = open_page(ALICE), open_page(BOB)
    alice.open(BOB)
    bob.open(ALICE)
    bob.wait_for_text("hi bob, this is the start of our chat")

    # alice types and sends: bob's page shows it within 2 s, without a reload
    started = alice.type_and_send("Hello Bob!\nA second line.")
    shown = bob.wait_for_text("Hello Bob!\nA second line.", timeout=2_000)
    assert shown - started < 2.0
    assert bob.message("Hello Bob!").locator(".text").text_content() == "Hello Bob!\nA second line."
    # ... and alice's page shows it delivered
    sent = alice.message("Hello Bob!")
    sent.locator('.status[data-status="delivered"]').wait_for(timeout=5_000)
    assert "delivered" in sent.locator(".status").inner_text()

    # bob reacts: alice's page shows the reaction live
    mine = bob.message("Hello Bob!")
    mine.hover()
    mine.get_by_role("button", name="Add a reaction").click()
    shot(bob.page, "bob-reaction-picker")
    mine.get_by_role("button", name="React with \U0001f44d").click()
    alice.message("Hello Bob!").locator(".chip", has_text="\U0001f44d").wait_for(timeout=2_000)
    assert BOB in (alice.message("Hello Bob!").locator(".chip").get_attribute("title") or "")

    # bob answers (a reply), then edits his answer: alice sees the new text, marked edited
    bob.message("Hello Bob!").get_by_role("button", name="Reply to this message").click()
    bob.type_and_send("hi alice, typo here")
    alice.wait_for_text("hi alice, typo here")
    assert "Hello Bob!" in alice.message("hi alice, typo here").locator(".quote").inner_text()
    bob.message("hi alice, typo here").get_by_role("button", name="Edit this message").click()
    bob.page.locator("#dialog textarea").fill("hi alice, no typo")
    bob.page.locator("#dialog-ok").click()
    alice.wait_for_text("hi alice, no typo")
    assert alice.message("hi alice, no typo").locator(".edited").is_visible()
    assert alice.page.locator("#messages .text", has_text="typo here").count() == 0

    # Shift+Enter is a new line, Enter sends
    box = alice.page.locator("#input")
    box.press_sequentially("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    assert box.input_value() == "line one\nline two"  # not sent yet
    box.press("Enter")
    bob.wait_for_text("line one\nline two")
    wait_for(lambda: box.input_value() == "", 3)  # emptied once the page heard it was sent

    # every control has an accessible name
    for page in (alice, bob):
        unnamed = page.page.evaluate(
            """() => [...document.querySelectorAll('button, input, textarea, [role=log]')]
                .filter((e) => !(e.getAttribute('aria-label') || e.textContent.trim()
                                 || (e.labels && e.labels.length)))
                .map((e) => e.outerHTML)"""
        )
        assert unnamed == []

    # the conversation list: newest first, last message, unread count on bob's side
    first = bob.page.locator("#conversations .conv").first
    assert first.get_attribute("data-id") == ALICE

    # time from Enter on one page to the text on the other, several times
    times = _median_latency(alice, bob, 7)
    with capsys.disabled():
        ms = sorted(round(t * 1000) for t in times)
        print(f"\n[web] send->shown on the other page: median {statistics.median(ms)} ms of {ms}")
    assert max(times) < 2.0
    shot(alice.page, "alice-conversation")
    shot(bob.page, "bob-conversation")


def test_unread_count_and_new_chat(net, open_page, shot):
    bob = open_page(BOB)
    for i in range(3):
        net[ALICE].send_message(BOB, f"unread {i}")
    row = bob.page.locator(f'#conversations .conv[data-id="{ALICE}"]')
    row.locator(".badge", has_text="3").wait_for(timeout=5_000)
    assert "unread 2" in row.locator(".conv-preview").inner_text()
    shot(bob.page, "bob-unread")
    row.click()
    row.locator(".badge").wait_for(state="detached", timeout=3_000)
    assert wait_for(lambda: net[BOB].list_conversations()[0].unread == 0, 3)

    # a new conversation from the page, with someone never written to
    carol_page = open_page(CAROL)
    carol_page.page.get_by_role("button", name="Start a new conversation").click()
    carol_page.page.locator("#dialog .person", has_text=BOB).locator("input").check()
    carol_page.page.locator("#dialog-ok").click()
    carol_page.type_and_send("hello from carol")
    bob.open(CAROL)
    bob.wait_for_text("hello from carol")


def test_group_of_three(net, open_page, shot):
    for email in (ALICE, BOB, CAROL):
        net[email]  # all three serve before the group is made
    alice, bob, carol = open_page(ALICE), open_page(BOB), open_page(CAROL)
    alice.page.get_by_role("button", name="Create a group").click()
    alice.page.locator("#dialog .field input").first.fill("Book club")
    for email in (BOB, CAROL):
        alice.page.locator("#dialog .person", has_text=email).locator("input").check()
    alice.page.locator("#dialog-ok").click()
    alice.page.locator("#chat-title", has_text="Book club").wait_for()
    gid = wait_for(lambda: net[ALICE].list_groups(), 3)[0].group_id
    wait_for(lambda: len(net[CAROL].list_groups()) == 1 and len(net[BOB].list_groups()) == 1, 5)
    alice.type_and_send("welcome to the book club")
    for page in (bob, carol):
        page.open(f"group:{gid}")
        page.wait_for_text("welcome to the book club", timeout=3_000)
    carol.type_and_send("thanks alice")
    alice.wait_for_text("thanks alice")
    bob.wait_for_text("thanks alice")
    assert carol.email in alice.message("thanks alice").locator(".sender").inner_text()
    alice.message("welcome to the book club").locator('.status[data-status="delivered"]').wait_for(
        timeout=5_000
    )
    # the members dialog lists all three; alice (the owner) removes carol
    alice.page.get_by_role("button", name="Group members").click()
    members = alice.page.locator("#dialog .members li")
    assert members.count() == 3
    shot(alice.page, "alice-group-members")
    alice.page.get_by_role("checkbox", name=f"Remove {CAROL}").check()
    alice.page.locator("#dialog-ok").click()
    alice.page.locator("#chat-sub", has_text="2 members").wait_for(timeout=3_000)
    wait_for(lambda: CAROL not in net[BOB].get_group(gid).members, 5)
    shot(alice.page, "alice-group")


def test_block_and_unblock_from_the_page_and_a_failure_with_its_reason(net, open_page, shot):
    net[ALICE].send_message(BOB, "before the block")
    alice, bob = open_page(ALICE), open_page(BOB)
    bob.open(ALICE)
    bob.page.get_by_role("button", name=f"Block {ALICE}").click()
    bob.page.get_by_role("button", name=f"Unblock {ALICE}").wait_for()
    assert ALICE in net[BOB].contact_policy.blocked
    bob.page.locator(f'#conversations .conv[data-id="{ALICE}"] .tag', has_text="blocked").wait_for()
    # what alice sends now is refused: her page says failed, and why
    alice.open(BOB)
    alice.type_and_send("are you there?")
    failed = alice.message("are you there?").locator('.status[data-status="failed"]')
    failed.wait_for(timeout=5_000)
    assert alice.page.locator("#input").input_value() == ""  # sent (and refused), not kept
    assert failed.locator(".status-text").inner_text() == "failed: refused: the sender is blocked"
    shot(alice.page, "alice-failed")
    bob.page.get_by_role("button", name=f"Unblock {ALICE}").click()
    bob.page.get_by_role("button", name=f"Block {ALICE}", exact=True).wait_for()
    assert ALICE not in net[BOB].contact_policy.blocked
    alice.type_and_send("and now?")
    bob.wait_for_text("and now?", timeout=3_000)


def test_delete_and_thread_view(net, open_page):
    root = net[ALICE].send_message(BOB, "root of a thread")
    net[BOB].send_message(ALICE, "an answer in the thread", reply_to=root.message_id)
    net[ALICE].send_message(BOB, "not in that thread")
    net[ALICE].send_message(BOB, "this one goes away")
    alice, bob = open_page(ALICE), open_page(BOB)
    alice.open(BOB)
    bob.open(ALICE)
    bob.wait_for_text("this one goes away")
    alice.message("this one goes away").get_by_role("button", name="Delete this message").click()
    alice.page.locator("#dialog-ok").click()
    bob.page.locator("#messages .msg.deleted").wait_for(timeout=2_000)
    assert bob.page.locator("#messages .text", has_text="goes away").count() == 0
    # the thread view shows the thread only, and replying there stays in it
    bob.message("root of a thread").get_by_role("button", name="Show this message's thread").click()
    bob.page.locator("#thread-bar").wait_for()
    texts = lambda: bob.page.locator("#messages .msg .text").all_inner_texts()  # noqa: E731
    wait_for(lambda: texts() == ["root of a thread", "an answer in the thread"], 3)
    bob.type_and_send("me too, in the thread")
    alice.wait_for_text("me too, in the thread")
    reply = net[ALICE].get_chat_history(BOB)[-1]
    assert reply.content == "me too, in the thread" and reply.thread_id == root.message_id
    bob.page.get_by_role("button", name="Close the thread view").click()
    bob.wait_for_text("not in that thread")


def test_search_opens_the_conversation_at_the_hit(net, open_page):
    net[ALICE].send_message(BOB, "the secret word is pineapple")
    net[ALICE].send_message(BOB, "something else")
    bob = open_page(BOB)
    bob.page.locator("#search").fill("pineapple")
    hit = bob.page.locator("#search-results .hit").first
    hit.wait_for(timeout=3_000)
    assert "[pineapple]" in hit.inner_text()
    hit.click()
    bob.page.locator(".msg.flash", has_text="pineapple").wait_for()


def test_older_pages_load_on_scroll(net, open_page):
    for i in range(70):
        net[ALICE].send_message(BOB, f"numbered {i:02d}", timeout=0)
    wait_for(lambda: len(net[BOB].get_chat_history(ALICE, limit=100)) == 70, 20)
    bob = open_page(BOB)
    bob.open(ALICE)
    bob.wait_for_text("numbered 69")
    assert bob.page.locator("#messages .msg").count() == 50
    bob.page.locator("#messages").evaluate("(box) => { box.scrollTop = 0; }")
    bob.wait_for_text("numbered 00")
    texts = bob.page.locator("#messages .msg .text").all_inner_texts()
    assert texts == [f"numbered {i:02d}" for i in range(70)]


def test_peer_html_renders_as_text(net, open_page, shot):
    """A group name, a text and a reaction carrying HTML show as text and run nothing.
    (Sender names are datasite emails, which cannot hold HTML: see syft_chat.identity.)"""
    group = net[CAROL].create_group(HOSTILE, [ALICE])
    wait_for(lambda: net[ALICE].list_groups(), 5)
    sent = net[CAROL].send_to_group(group.group_id, HOSTILE)
    net[CAROL].send_message(ALICE, HOSTILE)
    alice = open_page(ALICE)
    alice.open(f"group:{group.group_id}")
    alice.wait_for_text(HOSTILE, timeout=3_000)
    net[CAROL].react(sent.message_id, HOSTILE)
    alice.page.locator(".chip .emoji", has_text=HOSTILE).wait_for(timeout=3_000)
    assert alice.page.locator("#chat-title").inner_text() == HOSTILE
    assert alice.page.locator("#conversations .conv-title", has_text=HOSTILE).count() == 1
    alice.open(CAROL)
    alice.wait_for_text(HOSTILE)
    alice.page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert alice.page.locator("img").count() == 0
    assert alice.dialogs == []
    shot(alice.page, "alice-hostile-text")


def test_narrow_window(net, open_page, shot):
    net[ALICE].send_message(BOB, "seen on a phone-sized window")
    bob = open_page(BOB, viewport={"width": 380, "height": 700})
    assert bob.page.locator("#sidebar").is_visible()
    assert not bob.page.locator("#chat").is_visible()
    shot(bob.page, "bob-narrow-list")
    bob.open(ALICE)
    bob.wait_for_text("seen on a phone-sized window")
    assert not bob.page.locator("#sidebar").is_visible()
    width = bob.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 380, "the narrow page scrolls sideways"
    shot(bob.page, "bob-narrow-chat")
    bob.page.get_by_role("button", name="Back to the conversation list").click()
    assert bob.page.locator("#sidebar").is_visible()


def test_page_needs_nothing_but_its_own_server(net, open_page):
    """Every asset ships in the package: with every request to anything but the page's
    own server aborted (the fixture records and fails any), the page is complete: its
    stylesheet applies, its script runs, messages show."""
    net[BOB].send_message(ALICE, "no network needed")
    alice = open_page(ALICE)
    alice.open(BOB)
    alice.wait_for_text("no network needed")
    send_colour = alice.page.locator("#send").evaluate("(b) => getComputedStyle(b).backgroundColor")
    assert send_colour == "rgb(47, 111, 223)"  # app.css's --accent: the stylesheet applied
    assert alice.external == []


def test_offline_mode_loses_nothing(net, open_page):
    """Chromium's offline mode (it cuts loopback requests too): the loaded page keeps
    showing what arrives on its open event stream; a send fails visibly and keeps the text
    in the composer; back online, the same text goes out."""
    net[BOB].send_message(ALICE, "before going offline")
    alice = open_page(ALICE)
    alice.open(BOB)
    alice.wait_for_text("before going offline")
    alice.context.set_offline(True)
    net[BOB].send_message(ALICE, "sent while alice was offline")
    alice.wait_for_text("sent while alice was offline", timeout=3_000)
    alice.type_and_send("typed while offline")
    alice.page.locator("#error:not([hidden])").wait_for(timeout=3_000)
    assert alice.page.locator("#input").input_value() == "typed while offline"
    alice.context.set_offline(False)
    alice.page.locator("#input").press("Enter")
    alice.wait_for_text("typed while offline", timeout=3_000)
    wait_for(
        lambda: any(m.content == "typed while offline" for m in net[BOB].get_chat_history()), 5
    )


def test_text_typed_while_a_message_is_on_its_way_is_kept(net, open_page):
    """The composer empties when a message is sent, not when the server answers: what is
    typed meanwhile is the next message (it used to be wiped by the earlier answer)."""
    net[ALICE].send_message(BOB, "hello alice")
    alice = open_page(ALICE)
    alice.open(BOB)
    held: list = []
    alice.page.route("**/api/send", lambda route: held.append(route))  # held until let go
    alice.type_and_send("first, on its way")
    alice.page.wait_for_timeout(300)
    assert held, "the send did not go out"
    box = alice.page.locator("#input")
    assert box.input_value() == ""
    box.fill("second, being typed")
    held[0].continue_()
    alice.wait_for_text("first, on its way")
    alice.page.wait_for_timeout(300)
    assert box.input_value() == "second, being typed"
