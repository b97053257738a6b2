#!/bin/sh
. "$(dirname "$0")/lib.sh"
setup
done_testing
