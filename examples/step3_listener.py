"""The seed README's Step 3: real-time message processing.

    python examples/step3_listener.py [CONFIG_PATH] [DB_PATH]

Prints every incoming message until you press Enter (or stdin closes).
"""

import sys

import syft_chat_stateful as syft_chat

config_path = sys.argv[1] if len(sys.argv) > 1 else "~/.syft_config.json"
db_path = sys.argv[2] if len(sys.argv) > 2 else "chat_messages.db"

# Create a chat client
client = syft_chat.client(config_path, db_path=db_path)


# Define a message listener
def message_handler(message):
    print(f"\n🔔 NEW MESSAGE from {message.sender}: {message.content}", flush=True)

    # You could process messages differently based on content/sender
    if "urgent" in message.content.lower():
        print("⚠️ URGENT MESSAGE DETECTED!", flush=True)


# Register the listener
client.add_message_listener(message_handler)

print("Chat client ready. Waiting for messages...", flush=True)

# Keep the program running to receive messages
try:
    # In a real application, you might have your own event loop
    # or integrate with other systems
    input("Press Enter to exit...")
except EOFError:
    pass
finally:
    client.close()
