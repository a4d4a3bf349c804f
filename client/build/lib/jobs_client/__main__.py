from jobs_client.cli import main

main()
