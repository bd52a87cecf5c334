from inr_cli.app import main

main()
