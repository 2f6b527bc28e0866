-- Readers' time zones by one name each (README, "Rhythms"). A browser may
-- report an old name that the tz database keeps as a link (Chromium says
-- Europe/Kiev for Europe/Kyiv); such readers made a digest stream of their own
-- beside the readers of the same zone. Zones are now stored by their
-- canonical name (src/domain/zone_aliases.rs holds the same table); this
-- moves the rows stored before.
CREATE TEMPORARY TABLE zone_aliases (alias TEXT PRIMARY KEY, canonical TEXT NOT NULL);
INSERT INTO zone_aliases (alias, canonical) VALUES
    ('Africa/Asmera', 'Africa/Asmara'),
    ('Africa/Timbuktu', 'Africa/Abidjan'),
    ('America/Argentina/ComodRivadavia', 'America/Argentina/Catamarca'),
    ('America/Atka', 'America/Adak'),
    ('America/Buenos_Aires', 'America/Argentina/Buenos_Aires'),
    ('America/Catamarca', 'America/Argentina/Catamarca'),
    ('America/Coral_Harbour', 'America/Panama'),
    ('America/Cordoba', 'America/Argentina/Cordoba'),
    ('America/Ensenada', 'America/Tijuana'),
    ('America/Fort_Wayne', 'America/Indiana/Indianapolis'),
    ('America/Godthab', 'America/Nuuk'),
    ('America/Indianapolis', 'America/Indiana/Indianapolis'),
    ('America/Jujuy', 'America/Argentina/Jujuy'),
    ('America/Knox_IN', 'America/Indiana/Knox'),
    ('America/Louisville', 'America/Kentucky/Louisville'),
    ('America/Mendoza', 'America/Argentina/Mendoza'),
    ('America/Montreal', 'America/Toronto'),
    ('America/Nipigon', 'America/Toronto'),
    ('America/Pangnirtung', 'America/Iqaluit'),
    ('America/Porto_Acre', 'America/Rio_Branco'),
    ('America/Rainy_River', 'America/Winnipeg'),
    ('America/Rosario', 'America/Argentina/Cordoba'),
    ('America/Santa_Isabel', 'America/Tijuana'),
    ('America/Shiprock', 'America/Denver'),
    ('America/Thunder_Bay', 'America/Toronto'),
    ('America/Virgin', 'America/St_Thomas'),
    ('America/Yellowknife', 'America/Edmonton'),
    ('Antarctica/South_Pole', 'Pacific/Auckland'),
    ('Asia/Ashkhabad', 'Asia/Ashgabat'),
    ('Asia/Calcutta', 'Asia/Kolkata'),
    ('Asia/Choibalsan', 'Asia/Ulaanbaatar'),
    ('Asia/Chongqing', 'Asia/Shanghai'),
    ('Asia/Chungking', 'Asia/Shanghai'),
    ('Asia/Dacca', 'Asia/Dhaka'),
    ('Asia/Harbin', 'Asia/Shanghai'),
    ('Asia/Istanbul', 'Europe/Istanbul'),
    ('Asia/Kashgar', 'Asia/Urumqi'),
    ('Asia/Katmandu', 'Asia/Kathmandu'),
    ('Asia/Macao', 'Asia/Macau'),
    ('Asia/Rangoon', 'Asia/Yangon'),
    ('Asia/Saigon', 'Asia/Ho_Chi_Minh'),
    ('Asia/Tel_Aviv', 'Asia/Jerusalem'),
    ('Asia/Thimbu', 'Asia/Thimphu'),
    ('Asia/Ujung_Pandang', 'Asia/Makassar'),
    ('Asia/Ulan_Bator', 'Asia/Ulaanbaatar'),
    ('Atlantic/Faeroe', 'Atlantic/Faroe'),
    ('Atlantic/Jan_Mayen', 'Europe/Berlin'),
    ('Australia/ACT', 'Australia/Sydney'),
    ('Australia/Canberra', 'Australia/Sydney'),
    ('Australia/Currie', 'Australia/Hobart'),
    ('Australia/LHI', 'Australia/Lord_Howe'),
    ('Australia/NSW', 'Australia/Sydney'),
    ('Australia/North', 'Australia/Darwin'),
    ('Australia/Queensland', 'Australia/Brisbane'),
    ('Australia/South', 'Australia/Adelaide'),
    ('Australia/Tasmania', 'Australia/Hobart'),
    ('Australia/Victoria', 'Australia/Melbourne'),
    ('Australia/West', 'Australia/Perth'),
    ('Australia/Yancowinna', 'Australia/Broken_Hill'),
    ('Brazil/Acre', 'America/Rio_Branco'),
    ('Brazil/DeNoronha', 'America/Noronha'),
    ('Brazil/East', 'America/Sao_Paulo'),
    ('Brazil/West', 'America/Manaus'),
    ('CET', 'Europe/Brussels'),
    ('CST6CDT', 'America/Chicago'),
    ('Canada/Atlantic', 'America/Halifax'),
    ('Canada/Central', 'America/Winnipeg'),
    ('Canada/Eastern', 'America/Toronto'),
    ('Canada/Mountain', 'America/Edmonton'),
    ('Canada/Newfoundland', 'America/St_Johns'),
    ('Canada/Pacific', 'America/Vancouver'),
    ('Canada/Saskatchewan', 'America/Regina'),
    ('Canada/Yukon', 'America/Whitehorse'),
    ('Chile/Continental', 'America/Santiago'),
    ('Chile/EasterIsland', 'Pacific/Easter'),
    ('Cuba', 'America/Havana'),
    ('EET', 'Europe/Athens'),
    ('EST', 'America/Panama'),
    ('EST5EDT', 'America/New_York'),
    ('Egypt', 'Africa/Cairo'),
    ('Eire', 'Europe/Dublin'),
    ('Etc/GMT', 'UTC'),
    ('Etc/GMT+0', 'UTC'),
    ('Etc/GMT-0', 'UTC'),
    ('Etc/GMT0', 'UTC'),
    ('Etc/Greenwich', 'UTC'),
    ('Etc/UCT', 'UTC'),
    ('Etc/UTC', 'UTC'),
    ('Etc/Universal', 'UTC'),
    ('Etc/Zulu', 'UTC'),
    ('Europe/Belfast', 'Europe/London'),
    ('Europe/Kiev', 'Europe/Kyiv'),
    ('Europe/Nicosia', 'Asia/Nicosia'),
    ('Europe/Tiraspol', 'Europe/Chisinau'),
    ('Europe/Uzhgorod', 'Europe/Kyiv'),
    ('Europe/Zaporozhye', 'Europe/Kyiv'),
    ('GB', 'Europe/London'),
    ('GB-Eire', 'Europe/London'),
    ('GMT', 'UTC'),
    ('GMT+0', 'UTC'),
    ('GMT-0', 'UTC'),
    ('GMT0', 'UTC'),
    ('Greenwich', 'UTC'),
    ('HST', 'Pacific/Honolulu'),
    ('Hongkong', 'Asia/Hong_Kong'),
    ('Iceland', 'Atlantic/Reykjavik'),
    ('Iran', 'Asia/Tehran'),
    ('Israel', 'Asia/Jerusalem'),
    ('Jamaica', 'America/Jamaica'),
    ('Japan', 'Asia/Tokyo'),
    ('Kwajalein', 'Pacific/Kwajalein'),
    ('Libya', 'Africa/Tripoli'),
    ('MET', 'Europe/Brussels'),
    ('MST', 'America/Phoenix'),
    ('MST7MDT', 'America/Denver'),
    ('Mexico/BajaNorte', 'America/Tijuana'),
    ('Mexico/BajaSur', 'America/Mazatlan'),
    ('Mexico/General', 'America/Mexico_City'),
    ('NZ', 'Pacific/Auckland'),
    ('NZ-CHAT', 'Pacific/Chatham'),
    ('Navajo', 'America/Denver'),
    ('PRC', 'Asia/Shanghai'),
    ('PST8PDT', 'America/Los_Angeles'),
    ('Pacific/Enderbury', 'Pacific/Kanton'),
    ('Pacific/Johnston', 'Pacific/Honolulu'),
    ('Pacific/Ponape', 'Pacific/Pohnpei'),
    ('Pacific/Samoa', 'Pacific/Pago_Pago'),
    ('Pacific/Truk', 'Pacific/Chuuk'),
    ('Pacific/Yap', 'Pacific/Port_Moresby'),
    ('Poland', 'Europe/Warsaw'),
    ('Portugal', 'Europe/Lisbon'),
    ('ROC', 'Asia/Taipei'),
    ('ROK', 'Asia/Seoul'),
    ('Singapore', 'Asia/Singapore'),
    ('Turkey', 'Europe/Istanbul'),
    ('UCT', 'UTC'),
    ('US/Alaska', 'America/Anchorage'),
    ('US/Aleutian', 'America/Adak'),
    ('US/Arizona', 'America/Phoenix'),
    ('US/Central', 'America/Chicago'),
    ('US/East-Indiana', 'America/Indiana/Indianapolis'),
    ('US/Eastern', 'America/New_York'),
    ('US/Hawaii', 'Pacific/Honolulu'),
    ('US/Indiana-Starke', 'America/Indiana/Knox'),
    ('US/Michigan', 'America/Detroit'),
    ('US/Mountain', 'America/Denver'),
    ('US/Pacific', 'America/Los_Angeles'),
    ('US/Samoa', 'Pacific/Pago_Pago'),
    ('Universal', 'UTC'),
    ('W-SU', 'Europe/Moscow'),
    ('WET', 'Europe/Lisbon'),
    ('Zulu', 'UTC');

UPDATE subscriptions
SET timezone = (SELECT canonical FROM zone_aliases WHERE alias = subscriptions.timezone)
WHERE timezone IN (SELECT alias FROM zone_aliases);

-- A rhythm's runs are keyed by stream, `daily:Europe/Kiev`: a past run moves
-- to its canonical stream, so that stream does not send the same period to
-- the readers who just joined it. Where two runs of one period would meet
-- under one name (both streams ran it), both stay as they are: history.
CREATE TEMPORARY TABLE stream_aliases AS
SELECT r.rhythm || ':' || z.alias AS old_stream, r.rhythm || ':' || z.canonical AS new_stream
FROM zone_aliases z
CROSS JOIN (SELECT 'daily' AS rhythm UNION ALL SELECT 'weekly' UNION ALL SELECT 'immediate') r;

UPDATE digest_runs
SET stream = (SELECT new_stream FROM stream_aliases WHERE old_stream = digest_runs.stream)
WHERE stream IN (SELECT old_stream FROM stream_aliases)
  AND NOT EXISTS (
    SELECT 1 FROM digest_runs other
    JOIN stream_aliases mine ON mine.old_stream = digest_runs.stream
    WHERE other.newsletter_id = digest_runs.newsletter_id
      AND other.period_start = digest_runs.period_start
      AND other.id <> digest_runs.id
      AND (other.stream = mine.new_stream
           OR other.stream IN (SELECT old_stream FROM stream_aliases WHERE new_stream = mine.new_stream)));

DROP TABLE stream_aliases;
DROP TABLE zone_aliases;
