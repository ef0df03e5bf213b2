from runtime.migration.main import main

main()
