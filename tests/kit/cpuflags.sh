#!/bin/sh
# Prints the first CPU's /proc/cpuinfo flags one per line as
# "cpuflag=NAME", for the --cpu tests (docs/cpu.md): what the guest's Linux
# found in the CPUID the VMM gave it.
for f in $(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -n 1); do
	echo "cpuflag=$f"
done
echo "cpuflags: done"
