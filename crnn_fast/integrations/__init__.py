"""Bridges to other frameworks. Each lives in its own module and imports its framework only when used, so
`import crnn_fast` never needs them:

- crnn_fast.integrations.ray: batch recognition on Ray Data (`pip install "crnn_fast[ray]"`).
"""
