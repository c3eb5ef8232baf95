// Command mailbench is the helper that bench/mailserver/compare.sh drives
// to compare mailvault's mail server with Postfix + Dovecot:
//
//	mailbench dns -listen 127.0.0.77:53      answer every DNS query NXDOMAIN
//	mailbench wait -dir D -count N           wait until D holds N files
//	mailbench procs -pid P [-reset]          peak RSS and CPU of P and its descendants
//	mailbench imapfetch -addr A -user U ...  time FETCH over one IMAPS session
//
// Every subcommand prints one JSON object on stdout; errors go to stderr
// with exit status 1 (2 for a usage error).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := newFlagSet(os.Args[1])
	var run func(context.Context) error
	switch os.Args[1] {
	case "dns":
		run = dnsCmd(fs)
	case "wait":
		run = waitCmd(fs)
	case "procs":
		run = procsCmd(fs)
	case "imapfetch":
		run = imapFetchCmd(fs)
	default:
		usage()
	}
	fs.Parse(os.Args[2:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mailbench %s: unexpected arguments %q\n", os.Args[1], fs.Args())
		os.Exit(2)
	}
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "mailbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func newFlagSet(name string) *flag.FlagSet {
	return flag.NewFlagSet(name, flag.ExitOnError)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mailbench dns|wait|procs|imapfetch [flags] (-h for a subcommand's flags)")
	os.Exit(2)
}
