"""The seed README's Step 2: basic chat with a database.

    python examples/step2_basic_chat.py [CONFIG_PATH] [DB_PATH]

CONFIG_PATH defaults to the seed's ~/.syft_alice_config.json. To try it without
SyftBox, run `python -m syft_chat demo --keep` and pass the config it prints.
"""

import sys

import syft_chat_stateful as syft_chat

config_path = sys.argv[1] if len(sys.argv) > 1 else "~/.syft_alice_config.json"
db_path = sys.argv[2] if len(sys.argv) > 2 else "alice_chat_messages.db"

# Create a chat client with a specific database file
client = syft_chat.client(config_path, db_path=db_path)

# List available chat users
chat_users = client.list_available_users()
print(f"Available chat users: {len(chat_users)}")

# Send a message to another user
if chat_users:
    other_user = chat_users[0]
    response = client.send_message(other_user, "Hello from Alice!")
    print(f"Message sent with ID: {response.message_id}")

# Get chat history from the database
messages = client.get_chat_history()
for msg in messages:
    print(f"[{msg.timestamp}] {msg.sender}: {msg.content}")

# Clean up when done
client.close()
