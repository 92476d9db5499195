from aima.surfaces.cli.main import main

main()
