"""The seed README's Step 4: advanced database querying.

    python examples/step4_queries.py [CONFIG_PATH] [DB_PATH] [THREAD_ID]

The SQLite file is yours to query while the client runs (WAL mode).
"""

import sqlite3
import sys
from datetime import datetime, timedelta

import syft_chat_stateful as syft_chat

config_path = sys.argv[1] if len(sys.argv) > 1 else "~/.syft_config.json"
db_path = sys.argv[2] if len(sys.argv) > 2 else "chat_messages.db"
thread_id = sys.argv[3] if len(sys.argv) > 3 else "your_thread_id"

# Create a chat client
client = syft_chat.client(config_path, db_path=db_path)

# Get chat history using the API
recent_messages = client.get_chat_history(since=datetime.now() - timedelta(days=1))
print(f"Recent messages: {len(recent_messages)}")

# For more advanced queries, you can access the database directly
conn = sqlite3.connect(db_path)
cursor = conn.cursor()

# Example: Find all messages in a specific thread
cursor.execute(
    "SELECT msg_id, sender, content, thread_id, reply_to FROM messages WHERE thread_id = ?",
    (thread_id,),
)
thread_messages = cursor.fetchall()
print(f"Messages in thread: {len(thread_messages)}")
for row in thread_messages:
    print("  ", row)

# Beyond the seed: delivery status of what you sent
for status, count in cursor.execute(
    "SELECT status, count(*) FROM messages WHERE direction = 'out' GROUP BY status"
):
    print(f"sent messages {status}: {count}")

# Don't forget to close the connection
conn.close()

# Clean up when done
client.close()
