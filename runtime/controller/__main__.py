from runtime.controller.main import main

main()
