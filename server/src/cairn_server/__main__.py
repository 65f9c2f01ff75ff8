from cairn_server.cli import main

main()
