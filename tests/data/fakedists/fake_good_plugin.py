"""A well-behaved plugin installed through an entry point (test data)."""

from syft_chat import hookimpl

seen = []


@hookimpl
def chat_message_received(message):
    seen.append(message.content)


@hookimpl
def chat_discover_users(client):
    return ["robot@bots.example"]
