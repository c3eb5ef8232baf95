package corpus

import "strings"

// wordList is the vocabulary message bodies are drawn from. A few hundred
// common English words, with the usual skew that some repeat far more often
// than others, is enough for bodies to compress about as well as real mail
// (roughly 3:1 with zstd), which is what matters for a backup benchmark.
var wordList = strings.Fields(`
the the the the of of of and and and to to to a a in in is is it that that for
for you you we we on with with as be this this are will can have not at from by
please thanks thank meeting project report attached attachment review update
week today tomorrow monday tuesday wednesday thursday friday next last time
team client customer order invoice payment budget quarter plan schedule call
draft version final document file folder server backup mail message reply
question answer issue problem solution change request approval deadline
contract proposal offer price cost sales marketing product release feature
test tests testing build deploy production staging database network account
access password security policy support ticket status progress summary notes
minutes agenda discussion decision action item items follow up looking forward
hear back soon regards best kind hello hi dear all everyone morning afternoon
evening let me know if any questions concerns feedback comments would like
could should might also just still already again more less some many much
very really quite about after before during between into over under through
without within because since although however therefore meanwhile otherwise
new old good great small large important urgent quick short long early late
first second third other same different possible available necessary
current previous following shared internal external public private open
closed pending confirmed cancelled delayed approved rejected updated fixed
send sent receive received check checked confirm confirmed prepare prepared
discuss discussed agree agreed need needed want wanted make made take took
give gave see saw look looked find found think thought know knew work worked
help helped start started finish finished move moved keep kept call called
office home travel trip flight hotel conference workshop training session
lunch dinner coffee room building floor desk phone laptop screen printer
data numbers figures results analysis chart table sheet spreadsheet slides
presentation deck template format section page pages line lines point points
january february march april may june july august september october november
december year month day hour minute morning night weekend holiday vacation
people person manager director engineer developer designer analyst lead
partner vendor supplier contractor consultant colleague friend family
`)

// firstNames pairs a display name with the ASCII spelling used in the
// mailbox name. Non-ASCII names make the generator emit RFC 2047
// encoded-words, as real clients do.
var firstNames = [][2]string{
	{"Alice", "alice"}, {"Bob", "bob"}, {"Carol", "carol"}, {"David", "david"},
	{"Emma", "emma"}, {"Frank", "frank"}, {"Grace", "grace"}, {"Hugo", "hugo"},
	{"Irene", "irene"}, {"Jack", "jack"}, {"Karen", "karen"}, {"Liam", "liam"},
	{"Maria", "maria"}, {"Nathan", "nathan"}, {"Olivia", "olivia"}, {"Paul", "paul"},
	{"Quentin", "quentin"}, {"Rachel", "rachel"}, {"Samuel", "samuel"}, {"Tina", "tina"},
	{"Ulrich", "ulrich"}, {"Victor", "victor"}, {"Wendy", "wendy"}, {"Xavier", "xavier"},
	{"Yasmin", "yasmin"}, {"Zach", "zach"}, {"José", "jose"}, {"Zoë", "zoe"},
	{"François", "francois"}, {"Björn", "bjorn"}, {"Łukasz", "lukasz"}, {"Søren", "soren"},
	{"Inês", "ines"}, {"Jürgen", "jurgen"}, {"Ángela", "angela"}, {"Chloé", "chloe"},
	{"Дмитрий", "dmitri"}, {"Анна", "anna"}, {"太郎", "taro"}, {"美咲", "misaki"},
}

var lastNames = [][2]string{
	{"Martin", "martin"}, {"Smith", "smith"}, {"Jones", "jones"}, {"Brown", "brown"},
	{"Taylor", "taylor"}, {"Wilson", "wilson"}, {"Clark", "clark"}, {"Lewis", "lewis"},
	{"Walker", "walker"}, {"Hall", "hall"}, {"Young", "young"}, {"King", "king"},
	{"Wright", "wright"}, {"Green", "green"}, {"Baker", "baker"}, {"Adams", "adams"},
	{"Nelson", "nelson"}, {"Carter", "carter"}, {"Mitchell", "mitchell"}, {"Roberts", "roberts"},
	{"García", "garcia"}, {"Müller", "muller"}, {"Dubois", "dubois"}, {"Nowak", "nowak"},
	{"Sørensen", "sorensen"}, {"Gonçalves", "goncalves"}, {"Lefèvre", "lefevre"}, {"Weiß", "weiss"},
	{"Иванов", "ivanov"}, {"Петрова", "petrova"}, {"田中", "tanaka"}, {"佐藤", "sato"},
}

// subjectTopics feed subject lines; the non-ASCII ones produce encoded-word
// subjects.
var subjectTopics = []string{
	"Quarterly report", "Budget review", "Meeting notes", "Project status",
	"Invoice", "Contract renewal", "Server maintenance", "Backup schedule",
	"Team lunch", "Travel plans", "Release candidate", "Security update",
	"Customer feedback", "Hiring plan", "Office move", "Training session",
	"Weekly sync", "Roadmap", "Design review", "Incident report",
	"Réunion d'équipe", "Überprüfung der Zahlen", "Café et croissants",
	"Presupuesto año próximo", "Отчёт за квартал", "会議の議事録", "Ærøskøbing trip",
}

// externalDomains are the domains of people outside the generated
// organisation; their mail arrives through the MX with a longer Received
// chain and DKIM headers.
var externalDomains = []string{
	"gmail.com", "outlook.com", "yahoo.fr", "web.de", "posteo.de",
	"supplier.example", "partner-corp.example", "lawfirm.example",
	"university.example.edu", "bank.example",
}

var localDomainNames = []string{
	"acme.example", "globex.example", "initech.example", "umbrella.example",
	"hooli.example", "stark.example", "wayne.example", "wonka.example",
}

var mailers = []string{
	"Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
	"Microsoft Outlook 16.0",
	"Apple Mail (2.3774.300.61.1.2)",
	"Roundcube Webmail/1.6.5",
	"K-9 Mail for Android",
	"Evolution 3.46.4-2",
}
