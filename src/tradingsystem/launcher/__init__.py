"""The local launcher: `tradingsystem up|down|status|health|logs`, every process under one supervisord."""
