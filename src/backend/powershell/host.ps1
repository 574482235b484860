# portflow PowerShell host, protocol 1.
#
# This script is FIXED: it ships inside the portflow binary, byte for byte, and
# is never edited per deployment or generated. portflow checks the SHA-256 it
# reports in `hello` and refuses a copy that differs. To install it on a remote
# Windows admin box, write out the shipped copy with `portflow powershell script`.
#
# portflow starts it as
#   pwsh -NoLogo -NoProfile -NonInteractive -File host.ps1
#     (PowerShell 7.2+, MicrosoftTeams module), or over SSH as
#   powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File host.ps1
#     (Windows PowerShell 5.1, SkypeForBusiness module).
#
# Protocol (src/backend/powershell/protocol.rs): one JSON request per stdin
# line; one reply line per request on stdout, marked with FRAME (0x1E "PF1 ")
# and ASCII only. Any other stdout line is noise to portflow.
#
# It runs only the cmdlets of $Operations, binding only the parameter names
# listed there, by splatting: request values are data, never code.
# This file is ASCII only: Windows PowerShell reads a script without a BOM in
# the ANSI code page.

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
$VerbosePreference = 'SilentlyContinue'
$DebugPreference = 'SilentlyContinue'

# Replies are ASCII anyway; UTF-8 without BOM keeps other output readable.
# Setting it fails without a console (some SSH sessions), which is harmless.
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }

$Frame = [string][char]0x1E + 'PF1 '

# Which parts are connected, and the tokens each connect handed over (kept
# to scrub them from error text, and for Move-CsUser -AccessTokens).
$Connected = @{ teams = $false; onprem = $false }
$Secrets = @{ teams = @(); onprem = @() }
$OnpremTokens = @()

# The operation table: the same as HOST_OPS in src/backend/powershell/ops.rs
# (tests/host_script.rs compares them). Project turns one output object into
# plain strings, booleans and string lists; $null for writes.
$Operations = @{
    get_online_user = @{
        Part = 'teams'
        Cmdlet = 'Get-CsOnlineUser'
        Params = @('Identity')
        Many = $false
        Project = {
            param($o)
            [ordered]@{
                Identity = Get-Text $o 'Identity'
                UserPrincipalName = Get-Text $o 'UserPrincipalName'
                SipAddress = Get-Text $o 'SipAddress'
                UsageLocation = Get-Text $o 'UsageLocation'
                HostingProvider = Get-Text $o 'HostingProvider'
                InterpretedUserType = Get-Text $o 'InterpretedUserType'
                TeamsUpgradeEffectiveMode = Get-Text $o 'TeamsUpgradeEffectiveMode'
                LineURI = Get-Text $o 'LineURI'
                OnPremLineURI = Get-Text $o 'OnPremLineURI'
                EnterpriseVoiceEnabled = Get-Flag $o 'EnterpriseVoiceEnabled'
                OnlineVoiceRoutingPolicy = Get-Text $o 'OnlineVoiceRoutingPolicy'
                FeatureTypes = [string[]]@(Get-TextList $o 'FeatureTypes')
                AssignedPlan = [string[]]@(Get-EnabledCapability $o)
                AccountType = Get-Text $o 'AccountType'
                UserDirSyncEnabled = Get-Flag $o 'UserDirSyncEnabled'
            }
        }
    }
    get_voicemail_settings = @{
        Part = 'teams'
        Cmdlet = 'Get-CsOnlineVoicemailUserSettings'
        Params = @('Identity')
        Many = $false
        Project = {
            param($o)
            [ordered]@{
                VoicemailEnabled = Get-Flag $o 'VoicemailEnabled'
            }
        }
    }
    set_voicemail_settings = @{
        Part = 'teams'
        Cmdlet = 'Set-CsOnlineVoicemailUserSettings'
        Params = @('Identity', 'VoicemailEnabled')
        Many = $false
        Project = $null
    }
    get_number_assignment = @{
        Part = 'teams'
        Cmdlet = 'Get-CsPhoneNumberAssignment'
        Params = @('TelephoneNumber')
        Many = $true
        Project = {
            param($o)
            [ordered]@{
                TelephoneNumber = Get-Text $o 'TelephoneNumber'
                NumberType = Get-Text $o 'NumberType'
                ActivationState = Get-Text $o 'ActivationState'
                PstnAssignmentStatus = Get-Text $o 'PstnAssignmentStatus'
                AssignedPstnTargetId = Get-Text $o 'AssignedPstnTargetId'
                LocationId = Get-Text $o 'LocationId'
                NumberSource = Get-Text $o 'NumberSource'
                PstnPartnerName = Get-Text $o 'PstnPartnerName'
                IsoCountryCode = Get-Text $o 'IsoCountryCode'
                LocationUpdateSupported = Get-Flag $o 'LocationUpdateSupported'
                PortInOrderStatus = Get-Text $o 'PortInOrderStatus'
            }
        }
    }
    set_number_assignment = @{
        Part = 'teams'
        Cmdlet = 'Set-CsPhoneNumberAssignment'
        Params = @('Identity', 'PhoneNumber', 'PhoneNumberType', 'LocationId')
        Many = $false
        Project = $null
    }
    set_enterprise_voice = @{
        Part = 'teams'
        Cmdlet = 'Set-CsPhoneNumberAssignment'
        Params = @('Identity', 'EnterpriseVoiceEnabled')
        Many = $false
        Project = $null
    }
    set_number_location = @{
        Part = 'teams'
        Cmdlet = 'Set-CsPhoneNumberAssignment'
        Params = @('PhoneNumber', 'LocationId')
        Many = $false
        Project = $null
    }
    remove_number_assignment = @{
        Part = 'teams'
        Cmdlet = 'Remove-CsPhoneNumberAssignment'
        Params = @('Identity', 'PhoneNumber', 'PhoneNumberType')
        Many = $false
        Project = $null
    }
    grant_voice_routing_policy = @{
        Part = 'teams'
        Cmdlet = 'Grant-CsOnlineVoiceRoutingPolicy'
        Params = @('Identity', 'PolicyName')
        Many = $false
        Project = $null
    }
    get_dialin_user = @{
        Part = 'teams'
        Cmdlet = 'Get-CsOnlineDialInConferencingUser'
        Params = @('Identity')
        Many = $false
        Project = {
            param($o)
            [ordered]@{
                Identity = Get-Text $o 'Identity'
                SipAddress = Get-Text $o 'SipAddress'
                ConferenceId = Get-Text $o 'ConferenceId'
                ServiceNumber = Get-Text $o 'ServiceNumber'
                TollFreeServiceNumber = Get-Text $o 'TollFreeServiceNumber'
            }
        }
    }
    send_dialin_email = @{
        Part = 'teams'
        Cmdlet = 'Set-CsOnlineDialInConferencingUser'
        Params = @('Identity', 'SendEmail')
        Many = $false
        Project = $null
    }
    get_lis_location = @{
        Part = 'teams'
        Cmdlet = 'Get-CsOnlineLisLocation'
        Params = @('LocationId')
        Many = $false
        Project = {
            param($o)
            [ordered]@{
                LocationId = Get-Text $o 'LocationId'
                CivicAddressId = Get-Text $o 'CivicAddressId'
                Description = Get-Text $o 'Description'
                Location = Get-Text $o 'Location'
                CountryOrRegion = Get-Text $o 'CountryOrRegion'
                ValidationStatus = Get-Text $o 'ValidationStatus'
            }
        }
    }
    get_cs_user = @{
        Part = 'onprem'
        Cmdlet = 'Get-CsUser'
        Params = @('Identity')
        Many = $false
        Project = {
            param($o)
            [ordered]@{
                UserPrincipalName = Get-Text $o 'UserPrincipalName'
                SipAddress = Get-Text $o 'SipAddress'
                EnterpriseVoiceEnabled = Get-Flag $o 'EnterpriseVoiceEnabled'
                LineURI = Get-Text $o 'LineURI'
                RegistrarPool = Get-Text $o 'RegistrarPool'
                HostingProvider = Get-Text $o 'HostingProvider'
            }
        }
    }
    set_cs_user = @{
        Part = 'onprem'
        Cmdlet = 'Set-CsUser'
        Params = @('Identity', 'LineURI', 'EnterpriseVoiceEnabled')
        Many = $false
        Project = $null
    }
    move_cs_user = @{
        Part = 'onprem'
        Cmdlet = 'Move-CsUser'
        # -AccessTokens comes from the session (Invoke-Call), never a request.
        Params = @('Identity', 'Target', 'Force', 'Confirm', 'HostedMigrationOverrideUrl')
        Many = $false
        Project = $null
    }
}

# One property of an output object, or $null when absent: StrictMode throws
# on a missing property, and module versions differ in what they return.
function Get-Field($o, [string]$Name) {
    if ($null -eq $o) { return $null }
    $prop = $o.PSObject.Properties[$Name]
    if ($null -eq $prop) { return $null }
    return $prop.Value
}

# A property as text (enums by name, GUIDs as text); empty means absent.
function Get-Text($o, [string]$Name) {
    $v = Get-Field $o $Name
    if ($null -eq $v) { return $null }
    $s = [string]$v
    if ($s.Length -eq 0) { return $null }
    return $s
}

# A property as a boolean; some module versions report "True" as text.
function Get-Flag($o, [string]$Name) {
    $v = Get-Field $o $Name
    if ($null -eq $v) { return $null }
    if ($v -is [bool]) { return $v }
    $s = ([string]$v).Trim()
    if ($s -eq 'true') { return $true }
    if ($s -eq 'false') { return $false }
    return $null
}

# A list property as its non-empty strings (callers wrap it in @()).
function Get-TextList($o, [string]$Name) {
    foreach ($v in @(Get-Field $o $Name)) {
        if ($null -eq $v) { continue }
        $s = [string]$v
        if ($s.Length -gt 0) { $s }
    }
}

# AssignedPlan: the Capability of each plan whose CapabilityStatus is Enabled.
function Get-EnabledCapability($o) {
    foreach ($plan in @(Get-Field $o 'AssignedPlan')) {
        if ((Get-Text $plan 'CapabilityStatus') -ne 'Enabled') { continue }
        $capability = Get-Text $plan 'Capability'
        if ($null -ne $capability) { $capability }
    }
}

# Old module versions return an error object (Code, Message, a type named
# ...ErrorResponse) instead of throwing (office-docs-powershell #9165).
function Test-ReturnedError($o) {
    if ($null -eq $o) { return $false }
    $names = @($o.PSObject.TypeNames) -join ' '
    if ($names -notlike '*ErrorResponse*') { return $false }
    return ($null -ne $o.PSObject.Properties['Code']) -and ($null -ne $o.PSObject.Properties['Message'])
}

# The first GUID after "correlation id", "request-id", "CorrelationId" and the like.
function Find-CorrelationId([string]$Text) {
    $pattern = '(?is)(?:correlation|request)[\s_-]*id\b.{0,40}?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'
    $m = [regex]::Match($Text, $pattern)
    if ($m.Success) { return $m.Groups[1].Value }
    return $null
}

# Error text must never carry a token: hide the session's tokens and anything
# shaped like a JWT.
function Hide-Secret([string]$Text) {
    if ($Text.Length -eq 0) { return $Text }
    foreach ($tokens in $Secrets.Values) {
        foreach ($t in $tokens) {
            if ($t.Length -gt 0) { $Text = $Text.Replace($t, '[redacted]') }
        }
    }
    return [regex]::Replace($Text, 'eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*)?', '[redacted]')
}

function New-Failure([string]$Fqid, [string]$Category, [string]$Type, [string]$Message, $CorrelationId) {
    return @{
        ok = $false
        error = [ordered]@{
            fqid = Hide-Secret $Fqid
            category = $Category
            type = $Type
            message = Hide-Secret $Message
            correlation_id = $CorrelationId
        }
    }
}

# A refusal by the host itself: fqid "<Reason>,PortflowHost".
function New-HostFailure([string]$Reason, [string]$Category, [string]$Message) {
    return New-Failure "$Reason,PortflowHost" $Category 'PortflowHost' $Message $null
}

function New-RecordFailure($Record) {
    $message = [string]$Record.Exception.Message
    $details = ''
    if ($null -ne $Record.ErrorDetails) { $details = [string]$Record.ErrorDetails.Message }
    $type = $Record.Exception.GetType().FullName
    $correlation = Find-CorrelationId ($message + ' ' + $details)
    return New-Failure ([string]$Record.FullyQualifiedErrorId) ([string]$Record.CategoryInfo.Category) $type $message $correlation
}

function New-ReturnedFailure($o) {
    $code = Get-Text $o 'Code'
    $message = [string](Get-Text $o 'Message')
    $type = [string]@($o.PSObject.TypeNames)[0]
    return New-Failure "$code,PortflowHost.ReturnedError" 'InvalidResult' $type $message (Find-CorrelationId $message)
}

# Escape every non-ASCII character as \uXXXX: Windows PowerShell's
# ConvertTo-Json has no -EscapeHandling, and the console encoding then
# cannot change a byte of a reply.
function ConvertTo-AsciiJson([string]$Json) {
    if ($Json -notmatch '[^\x00-\x7E]') { return $Json }
    $sb = New-Object System.Text.StringBuilder ($Json.Length + 64)
    foreach ($c in $Json.ToCharArray()) {
        $code = [int]$c
        if ($code -gt 0x7E) { [void]$sb.Append('\u').Append($code.ToString('x4')) }
        else { [void]$sb.Append($c) }
    }
    return $sb.ToString()
}

function Send-Reply([string]$Id, $Body) {
    $reply = [ordered]@{ id = $Id; ok = [bool]$Body.ok }
    if ($Body.ok) { $reply.result = $Body.result } else { $reply.error = $Body.error }
    $json = ConvertTo-Json -InputObject $reply -Compress -Depth 6
    [Console]::Out.WriteLine($Frame + (ConvertTo-AsciiJson $json))
    [Console]::Out.Flush()
}

# The highest installed version of a module, or $null.
function Get-ModuleVersion([string]$Name) {
    $m = Get-Module -ListAvailable -Name $Name -ErrorAction SilentlyContinue | Sort-Object -Property Version -Descending | Select-Object -First 1
    if ($null -eq $m) { return $null }
    return [string]$m.Version
}

# The version of a module this session imported.
function Get-LoadedVersion([string]$Name) {
    $m = Get-Module -Name $Name | Sort-Object -Property Version -Descending | Select-Object -First 1
    if ($null -eq $m) { return $null }
    return [string]$m.Version
}

function Invoke-Hello {
    $edition = 'Desktop'
    if ($PSVersionTable.ContainsKey('PSEdition')) { $edition = [string]$PSVersionTable.PSEdition }
    return @{
        ok = $true
        result = [ordered]@{
            protocol = 1
            script_sha256 = (Get-FileHash -LiteralPath $PSCommandPath -Algorithm SHA256).Hash.ToLowerInvariant()
            ps_version = $PSVersionTable.PSVersion.ToString()
            ps_edition = $edition
            modules = [ordered]@{
                MicrosoftTeams = Get-ModuleVersion 'MicrosoftTeams'
                SkypeForBusiness = Get-ModuleVersion 'SkypeForBusiness'
            }
        }
    }
}

function Invoke-Connect($req) {
    $part = [string](Get-Field $req 'part')
    $auth = Get-Field $req 'auth'
    $kind = [string](Get-Field $auth 'kind')
    $tokens = @(Get-TextList $auth 'tokens')
    # Known before anything can fail, so no error text can carry them.
    if ($Secrets.ContainsKey($part)) { $Secrets[$part] = $tokens }

    if ($part -eq 'teams') {
        if ($kind -eq 'access_tokens') {
            if ($tokens.Count -lt 2) {
                return New-HostFailure 'InvalidRequest' 'InvalidArgument' 'access_tokens needs two tokens: Graph, then Teams'
            }
            $connect = @{ AccessTokens = @($tokens[0], $tokens[1]) }
        } elseif ($kind -eq 'certificate_thumbprint') {
            $connect = @{
                CertificateThumbprint = [string](Get-Field $auth 'thumbprint')
                ApplicationId = [string](Get-Field $auth 'application_id')
                TenantId = [string](Get-Field $auth 'tenant_id')
            }
        } else {
            return New-HostFailure 'UnsupportedAuth' 'InvalidArgument' "part teams cannot sign in with auth kind '$kind'"
        }
        $connect.ErrorAction = 'Stop'
        Import-Module -Name MicrosoftTeams -DisableNameChecking -ErrorAction Stop 3>$null 4>$null 6>$null
        if ($Connected.teams) {
            $Connected.teams = $false
            # Only the new session matters; a failed sign-out of the old one does not.
            try { $null = Disconnect-MicrosoftTeams -ErrorAction Stop 3>$null 4>$null 6>$null } catch { }
        }
        $null = Connect-MicrosoftTeams @connect 3>$null 4>$null 5>$null 6>$null
        $Connected.teams = $true
        return @{
            ok = $true
            result = [ordered]@{ connected = $true; module = 'MicrosoftTeams'; module_version = Get-LoadedVersion 'MicrosoftTeams' }
        }
    }

    if ($part -eq 'onprem') {
        if ($kind -ne 'windows') {
            return New-HostFailure 'UnsupportedAuth' 'InvalidArgument' "part onprem cannot sign in with auth kind '$kind'"
        }
        Import-Module -Name SkypeForBusiness -DisableNameChecking -ErrorAction Stop 3>$null 4>$null 6>$null
        $script:OnpremTokens = $tokens
        $Connected.onprem = $true
        return @{
            ok = $true
            result = [ordered]@{ connected = $true; module = 'SkypeForBusiness'; module_version = Get-LoadedVersion 'SkypeForBusiness' }
        }
    }

    return New-HostFailure 'UnknownPart' 'InvalidArgument' "unknown part '$part'"
}

function Invoke-Call($req) {
    $name = [string](Get-Field $req 'op')
    if (-not $Operations.ContainsKey($name)) {
        return New-HostFailure 'UnknownOperation' 'InvalidArgument' "unknown operation '$name'"
    }
    $spec = $Operations[$name]

    # Arguments reach the cmdlet only as this hashtable, and only under the
    # names the table lists: any other name refuses the whole call.
    $splat = @{}
    foreach ($p in $req.args.PSObject.Properties) {
        if ($spec.Params -notcontains $p.Name) {
            return New-HostFailure 'ParameterNotAllowed' 'InvalidArgument' "operation '$name' does not take parameter '$($p.Name)'"
        }
        $splat[$p.Name] = $p.Value
    }
    if (-not $Connected[$spec.Part]) {
        return New-HostFailure 'NotConnected' 'InvalidOperation' "operation '$name' needs a connect of part '$($spec.Part)' first"
    }
    if ($name -eq 'move_cs_user' -and $OnpremTokens.Count -gt 0) {
        if ((Get-Command -Name 'Move-CsUser').Parameters.ContainsKey('AccessTokens')) {
            $splat.AccessTokens = $OnpremTokens
        }
    }
    # Module functions do not see this script's $ErrorActionPreference.
    $splat.ErrorAction = 'Stop'

    $out = & $spec.Cmdlet @splat 3>$null 4>$null 5>$null 6>$null

    $items = New-Object System.Collections.ArrayList
    foreach ($o in @($out)) {
        if ($null -eq $o) { continue }
        if (Test-ReturnedError $o) { return New-ReturnedFailure $o }
        [void]$items.Add($o)
    }
    if ($null -eq $spec.Project) {
        return @{ ok = $true; result = @{} }
    }
    if ($spec.Many) {
        $list = New-Object System.Collections.ArrayList
        foreach ($o in $items) { [void]$list.Add($spec.Project.InvokeReturnAsIs($o)) }
        return @{ ok = $true; result = $list }
    }
    if ($items.Count -eq 0) {
        return @{ ok = $true; result = $null }
    }
    return @{ ok = $true; result = $spec.Project.InvokeReturnAsIs($items[0]) }
}

while ($null -ne ($line = [Console]::In.ReadLine())) {
    if ($line.Trim().Length -eq 0) { continue }
    $id = ''
    try {
        $req = $null
        try { $req = ConvertFrom-Json -InputObject $line } catch { $req = $null }
        if ($null -eq $req) {
            # Never echo the line: a connect request carries tokens.
            $body = New-HostFailure 'InvalidRequest' 'InvalidData' 'the request line is not a JSON object'
        } else {
            $id = [string](Get-Field $req 'id')
            $type = [string](Get-Field $req 'type')
            if ($type -eq 'hello') {
                $body = Invoke-Hello
            } elseif ($type -eq 'connect') {
                $body = Invoke-Connect $req
            } elseif ($type -eq 'call') {
                $body = Invoke-Call $req
            } else {
                $body = New-HostFailure 'UnknownRequestType' 'InvalidArgument' "unknown request type '$type'"
            }
        }
    } catch {
        $body = New-RecordFailure $_
    }
    try {
        Send-Reply $id $body
    } catch {
        Send-Reply $id (New-HostFailure 'ReplyNotWritten' 'InvalidResult' 'the reply could not be written as JSON')
    }
}
