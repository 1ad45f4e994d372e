#!/bin/sh
# tools/setup_step.sh STEP COMMAND [ARG...]: run COMMAND, then print "setup: STEP N s", so that a
# fresh `make demo` or `make test` shows where its time went (the llama.cpp compile, each install).
# Plain sh and `date +%s`: it runs before the project's virtualenv exists, on Linux and macOS alike.
step=$1
shift
start=$(date +%s)
"$@"
status=$?
echo "setup: $step $(($(date +%s) - start)) s"
exit $status
