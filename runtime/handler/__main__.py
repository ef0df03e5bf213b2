from runtime.handler.main import main

main()
