package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// dnsCmd answers every DNS query over UDP with NXDOMAIN, fast. The
// benchmark machine has no resolver of its own that may be used (the
// configured one is not on loopback); this stands in for a resolver that
// knows none of the benchmark's made-up domains, so that both mail servers
// see the same quick "no such domain" for whatever they look up (SPF,
// DMARC, reverse DNS). It is written here rather than with a DNS library
// because it needs only the header and the question (RFC 1035 section
// 4.1): a library would bring a large dependency into the module for
// twenty lines.
//
// SIGUSR1 prints the number of queries answered so far, as JSON.
func dnsCmd(fs *flag.FlagSet) func(context.Context) error {
	listen := fs.String("listen", "127.0.0.77:53", "UDP address to answer on (loopback only)")
	return func(ctx context.Context) error {
		addr, err := net.ResolveUDPAddr("udp", *listen)
		if err != nil {
			return err
		}
		if !addr.IP.IsLoopback() {
			return fmt.Errorf("refusing to listen on %s: loopback addresses only", addr.IP)
		}
		conn, err := net.ListenUDP("udp", addr)
		if err != nil {
			return err
		}
		return serveDNS(ctx, conn, os.Stdout)
	}
}

// serveDNS answers the queries arriving on conn until ctx ends, then
// closes conn and writes the query count to out.
func serveDNS(ctx context.Context, conn *net.UDPConn, out io.Writer) error {
	defer conn.Close()
	var queries, refused atomic.Int64
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	enc := json.NewEncoder(out)
	var encMu sync.Mutex // SIGUSR1 and the final report may coincide
	report := func() {
		encMu.Lock()
		defer encMu.Unlock()
		enc.Encode(map[string]int64{"queries": queries.Load(), "malformed": refused.Load()})
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				conn.Close()
				return
			case <-usr1:
				report()
			}
		}
	}()
	buf := make([]byte, 4096)
	for {
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				report()
				return nil
			}
			return err
		}
		resp, ok := nxdomain(buf[:n])
		if !ok {
			refused.Add(1)
			continue
		}
		queries.Add(1)
		conn.WriteToUDP(resp, from)
	}
}

// nxdomain builds the answer to query q: its ID and question, QR set,
// RCODE 3 (name error), recursion available, nothing else (RFC 1035
// section 4.1.1). It reports false for anything that is not a standard
// query with one well-formed question.
func nxdomain(q []byte) ([]byte, bool) {
	if len(q) < 12 {
		return nil, false
	}
	flags := binary.BigEndian.Uint16(q[2:4])
	if flags&0x8000 != 0 || (flags>>11)&0xf != 0 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, false // a response, not QUERY, or not one question
	}
	// The question: labels up to the root label, then QTYPE and QCLASS.
	i := 12
	for {
		if i >= len(q) {
			return nil, false
		}
		l := int(q[i])
		if l == 0 {
			i++
			break
		}
		if l&0xc0 != 0 {
			return nil, false // no compression in a query's only name
		}
		i += 1 + l
	}
	if i+4 > len(q) {
		return nil, false
	}
	end := i + 4
	resp := make([]byte, end)
	copy(resp, q[:end])
	// QR=1, keep opcode and RD, RA=1, RCODE=3.
	binary.BigEndian.PutUint16(resp[2:4], 0x8000|flags&0x0100|0x0080|3)
	binary.BigEndian.PutUint16(resp[6:8], 0)   // ANCOUNT
	binary.BigEndian.PutUint16(resp[8:10], 0)  // NSCOUNT
	binary.BigEndian.PutUint16(resp[10:12], 0) // ARCOUNT (any EDNS OPT is dropped)
	return resp, true
}
